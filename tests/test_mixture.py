"""Mixture maths against hand arithmetic: Skill-it and Aioli updates, the per-step row
draw (chi-square over 1,000 steps), and state round trips."""

import math

import numpy as np
import pytest
from scipy.stats import chisquare

from winnow.trainer.mixture import Aioli, Mixture, SkillIt, draw_rows, stratified

E = math.e


def test_static_and_stratified():
    assert Mixture(["a", "b"]).update([5.0, 1.0]).tolist() == [0.5, 0.5]
    assert stratified(["a", "b", "c"], [1, 3, 4]).p.tolist() == [0.125, 0.375, 0.5]
    with pytest.raises(ValueError, match="non-negative"):
        Mixture(["a", "b"], [1, -1])


def test_skillit_identity_graph_by_hand():
    mix = SkillIt(["a", "b"], np.eye(2), eta=1.0, window=2)
    # p ∝ 0.5 e^1, 0.5 e^2
    assert np.allclose(mix.update([1.0, 2.0]), [1 / (1 + E), E / (1 + E)])
    # window of 2: summed losses (2, 3): p ∝ e^2, e^3, the same ratio
    assert np.allclose(mix.update([1.0, 1.0]), [1 / (1 + E), E / (1 + E)])
    # the first round leaves the window: (1, 1) + (1, 1) = (2, 2): uniform again
    assert np.allclose(mix.update([1.0, 1.0]), [0.5, 0.5])


def test_skillit_graph_routes_loss_to_the_helping_group():
    # training on a helps b: a high loss on b up-weights a; recomputed from p0 = (0.25, 0.75)
    mix = SkillIt(["a", "b"], [[0.0, 1.0], [0.0, 0.0]], p0=[1, 3], eta=2.0, window=1)
    p = mix.update([0.0, 1.0])  # p ∝ 0.25 e^2, 0.75 e^0
    assert np.allclose(p, [0.25 * E**2 / (0.25 * E**2 + 0.75), 0.75 / (0.25 * E**2 + 0.75)])


def test_skillit_upweights_the_worst_source_within_two_updates():
    mix = SkillIt(["s0", "s1", "s2"], np.eye(3), eta=0.5, window=3)
    for _ in range(2):
        p = mix.update([2.0, 3.5, 2.5])
    assert int(np.argmax(p)) == 1 and p[1] > 1 / 3


def test_aioli_estimate_and_update_by_hand():
    mix = Aioli(["a", "b"], eta=1.0, eps=0.5)
    assert np.allclose(mix.probes(), [[0.75, 0.25], [0.25, 0.75]])
    # true A[i, j] (drop of i per unit of j) = [[0.4, 0], [0.1, 0.2]]
    # drops[j, i] = sum_k P[j, k] A[i, k] = [[0.3, 0.125], [0.1, 0.175]]
    drops = [[0.3, 0.125], [0.1, 0.175]]
    assert np.allclose(mix.estimate(drops), [[0.4, 0.0], [0.1, 0.2]])
    # column sums (0.5, 0.2) / max|A| 0.4 = (1.25, 0.5); p ∝ 0.5 e^1.25, 0.5 e^0.5
    p = mix.update(drops)
    assert np.allclose(p, [1 / (1 + math.exp(-0.75)), 1 / (1 + math.exp(0.75))])
    # multiplicative from the previous p: new probes use it
    assert np.allclose(mix.probes()[0], 0.5 * np.array([1, 0]) + 0.5 * p)


def test_draw_rows_follows_p_and_renormalises_missing_groups():
    rng = np.random.default_rng(0)
    groups = np.array([0] * 50 + [1] * 30 + [2] * 20)
    p = np.array([0.2, 0.3, 0.5])
    picked = np.concatenate([draw_rows(groups, p, 8, rng) for _ in range(1000)])
    counts = np.bincount(groups[picked], minlength=3)
    assert chisquare(counts, 8000 * p).pvalue > 1e-3
    within = np.bincount(picked[groups[picked] == 0], minlength=50)[:50]
    assert chisquare(within).pvalue > 1e-3  # uniform over the group's rows
    # a bucket without group 2: (0.2, 0.3) renormalised to (0.4, 0.6)
    partial = np.array([1, 0, 1, 0, 0])
    picked = np.concatenate([draw_rows(partial, p, 8, rng) for _ in range(1000)])
    counts = np.bincount(partial[picked], minlength=2)
    assert chisquare(counts, 8000 * np.array([0.4, 0.6])).pvalue > 1e-3


def test_state_round_trip_continues_identically():
    def run(split):
        mix = SkillIt(["a", "b", "c"], np.eye(3), eta=0.3, window=2)
        losses = [[1, 2, 3], [3, 1, 2], [2, 2, 1], [1, 3, 2]]
        for i, loss in enumerate(losses):
            if i == split:
                state = mix.state_dict()
                mix = SkillIt(["a", "b", "c"], np.eye(3), eta=0.3, window=2)
                mix.load_state_dict(state)
            mix.update(loss)
        return mix.p

    assert np.array_equal(run(split=2), run(split=99))
    with pytest.raises(ValueError, match="skillit mixture, not aioli"):
        Aioli(["a", "b", "c"]).load_state_dict(SkillIt(["a", "b", "c"], np.eye(3)).state_dict())
