"""Does a small-scale ablation rank curation variants the way a larger one does?

Given each variant's metric values by seed at two scales, this computes the
Spearman rank correlation of the variants' means between the scales, with a
percentile bootstrap interval over seeds, and how often the two scales pick the
same winner (DataDecide's "decision accuracy"). Seeds are resampled jointly across
variants within a scale, because a seed fixes the init and data order of every
variant's run (the differences are paired), and independently between scales.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import rankdata


def spearman(a, b) -> float:
    """Spearman's rho (Pearson correlation of average ranks); nan if either side is
    constant."""
    ra, rb = rankdata(a), rankdata(b)
    if np.ptp(ra) == 0 or np.ptp(rb) == 0:
        return math.nan
    return float(np.corrcoef(ra, rb)[0, 1])


def _matrix(values: dict[str, list[float]], variants: list[str]) -> np.ndarray:
    """(variants, seeds) values; every variant must have the same number of seeds."""
    rows = [values[v] for v in variants]
    if len({len(r) for r in rows}) != 1:
        raise ValueError("every variant needs a value for every seed")
    return np.asarray(rows, np.float64)


def rank_agreement(
    small: dict[str, list[float]],
    large: dict[str, list[float]],
    *,
    flip_small: bool = False,
    flip_large: bool = False,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict:
    """Agreement of the variant rankings by ``small`` and ``large`` metric values
    (variant -> values by seed). ``flip_*``: higher is better for that metric, so its
    sign is flipped and "lower is better" holds on both sides. Returns ``rho`` (on the
    means), its 95% bootstrap interval ``rho_ci`` and ``winner_agreement``, the
    bootstrap share of draws in which both scales pick the same best variant."""
    variants = sorted(small)
    a = _matrix(small, variants) * (-1 if flip_small else 1)
    b = _matrix(large, variants) * (-1 if flip_large else 1)
    rho = spearman(a.mean(1), b.mean(1))
    rng = np.random.default_rng(seed)
    draws, same_winner = [], 0
    for _ in range(n_boot):
        ma = a[:, rng.integers(0, a.shape[1], a.shape[1])].mean(1)
        mb = b[:, rng.integers(0, b.shape[1], b.shape[1])].mean(1)
        draws.append(spearman(ma, mb))
        same_winner += int(np.argmin(ma) == np.argmin(mb))
    finite = np.asarray([d for d in draws if not math.isnan(d)])
    ci = (
        (float(np.percentile(finite, 2.5)), float(np.percentile(finite, 97.5)))
        if len(finite)
        else (math.nan, math.nan)
    )
    return {
        "rho": rho,
        "rho_ci": ci,
        "winner_agreement": same_winner / n_boot,
        "n_boot": n_boot,
        "variants": variants,
    }
