"""Rank agreement between scales: Spearman, bootstrap intervals over seeds, winners."""

import numpy as np
import pytest
from scipy.stats import spearmanr

from winnow.trainer.rank_stats import rank_agreement, spearman


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.integers(0, 4, 7), rng.standard_normal(7)
        if len(set(a)) > 1:
            assert spearman(a, b) == pytest.approx(spearmanr(a, b)[0])
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_noise_free_orderings_agree_exactly():
    small = {"a": [1.0, 1.0], "b": [2.0, 2.0], "c": [3.0, 3.0], "d": [4.0, 4.0]}
    large = {"a": [0.1] * 3, "b": [0.2] * 3, "c": [0.3] * 3, "d": [0.4] * 3}
    r = rank_agreement(small, large, n_boot=200)
    assert r["rho"] == pytest.approx(1.0) and r["winner_agreement"] == 1.0
    assert r["rho_ci"] == pytest.approx((1.0, 1.0))
    reversed_ = {v: [-x for x in xs] for v, xs in large.items()}
    r = rank_agreement(small, reversed_, n_boot=200)
    assert r["rho"] == pytest.approx(-1.0) and r["winner_agreement"] == 0.0
    # an accuracy at the small scale (higher is better) predicts a loss at the large one
    acc = {v: [-x for x in xs] for v, xs in small.items()}
    assert rank_agreement(acc, large, flip_small=True, n_boot=50)["rho"] == pytest.approx(1.0)


def test_bootstrap_interval_widens_with_seed_noise():
    rng = np.random.default_rng(1)
    means = np.array([1.0, 1.1, 1.2, 1.3, 1.4])
    names = list("abcde")

    def draw(sd):
        return {v: list(m + sd * rng.standard_normal(4)) for v, m in zip(names, means, strict=True)}

    quiet = rank_agreement(draw(0.005), draw(0.005), n_boot=500)
    noisy = rank_agreement(draw(0.2), draw(0.2), n_boot=500)
    width = [r["rho_ci"][1] - r["rho_ci"][0] for r in (quiet, noisy)]
    assert quiet["rho"] == pytest.approx(1.0) and width[0] < width[1]
    assert quiet["winner_agreement"] > noisy["winner_agreement"]
    assert noisy["rho_ci"][0] <= noisy["rho"] <= noisy["rho_ci"][1]
    small, large = draw(0.2), draw(0.2)
    assert rank_agreement(small, large, n_boot=50, seed=3) == rank_agreement(
        small, large, n_boot=50, seed=3
    )
