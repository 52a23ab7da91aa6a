"""Normalise several score columns over a corpus and combine them with weights.

``fit`` sees every value of a column once (whole corpus) and returns a
:class:`Normalizer`; ``transform`` maps values to the normalised scale:

- ``zscore``: ``(x - mean) / std`` (population std; a constant column maps to 0).
  ``mean`` is the exactly rounded mean (:func:`exact_sum`), ``std`` the root of the
  exactly rounded mean of ``(x - mean) ** 2``: neither depends on the values' order,
  so a distributed fit (the Spark backend) gives the same bits;
- ``percentile``: the fraction of corpus values strictly below ``x`` plus half of
  those equal to it (mid-rank), in [0, 1]; exact, keeps the sorted column in memory;
- ``none``: ``x`` unchanged.

Nulls and NaNs are ignored when fitting and contribute 0 to the weighted sum (the
corpus mean under z-scores). Weights come from YAML or from a JSON file, which is
the hook for learned weights (Meta-rater style: fit weights to proxy-model ablation
results, write ``{"weights": {...}}``, point the stage at the file).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import numpy as np

from winnow.errors import ConfigError

Method = Literal["zscore", "percentile", "none"]


@dataclass
class Normalizer:
    method: Method
    mean: float = 0.0
    std: float = 1.0
    sorted_values: np.ndarray | None = None
    count: int = 0
    """How many finite values were fitted."""

    def transform(self, values: np.ndarray) -> np.ndarray:
        x = np.asarray(values, dtype=np.float64)
        if self.method == "zscore":
            out = (x - self.mean) / self.std if self.std > 0 else np.zeros_like(x)
        elif self.method == "percentile":
            ref = self.sorted_values
            if ref is None or len(ref) == 0:
                out = np.zeros_like(x)
            else:
                below = np.searchsorted(ref, x, side="left")
                upto = np.searchsorted(ref, x, side="right")
                out = mid_rank(below, upto, len(ref))
        else:
            out = x.copy()
        out[~np.isfinite(x)] = 0.0
        return out

    def summary(self) -> dict:
        if self.method == "zscore":
            return {"method": self.method, "mean": self.mean, "std": self.std}
        if self.method == "percentile":
            return {"method": self.method, "count": self.count}
        return {"method": self.method}


def fit(values: np.ndarray, method: Method) -> Normalizer:
    """Fit a normaliser on all of a column's values (non-finite ones ignored)."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if method == "zscore":
        mean = exact_mean(exact_sum(x), len(x))
        std = math.sqrt(exact_mean(exact_sum(squared_deviations(x, mean)), len(x)))
        return Normalizer(method, mean, std, count=len(x))
    if method == "percentile":
        return Normalizer(method, sorted_values=np.sort(x), count=len(x))
    return Normalizer(method, count=len(x))


def mid_rank(below: np.ndarray, upto: np.ndarray, n: int) -> np.ndarray:
    """The percentile of values with ``below`` corpus values strictly below them and
    ``upto`` at most them, out of ``n``."""
    return (below + upto) / (2.0 * n)


def squared_deviations(x: np.ndarray, mean: float) -> np.ndarray:
    """``(x - mean) ** 2`` element-wise: the terms whose exact sum is the variance."""
    d = np.asarray(x, dtype=np.float64) - mean
    return d * d


def exact_sum(x: np.ndarray) -> Fraction:
    """The exact sum of finite float64 values, whatever their order or grouping: sums
    over parts add up (as fractions) to the sum over the whole.

    Each value is ``m * 2**e`` with an integer ``|m| < 2**53``; ``m`` is split into
    26-bit halves summed per exponent in int64 (no overflow below 2**36 values per
    call), and the per-exponent sums are combined in Python integers.
    """
    x = np.asarray(x, dtype=np.float64)
    x = x[x != 0]
    if x.size == 0:
        return Fraction(0)
    frac, exp = np.frexp(x)
    mant = np.ldexp(frac, 53).astype(np.int64)  # exact: |frac| in [0.5, 1)
    exp = exp.astype(np.int64) - 53
    order = np.argsort(exp, kind="stable")
    mant, exp = mant[order], exp[order]
    starts = np.flatnonzero(np.diff(exp, prepend=exp[0] - 1))
    hi = np.add.reduceat(mant >> 26, starts)
    lo = np.add.reduceat(mant & ((1 << 26) - 1), starts)
    base = int(exp[0])
    total = 0
    for e, h, low in zip(exp[starts].tolist(), hi.tolist(), lo.tolist(), strict=True):
        total += ((h << 26) + low) << (e - base)
    return Fraction(total) * Fraction(2) ** base


def exact_mean(total: Fraction, n: int) -> float:
    """``total / n`` rounded once to the nearest float (0.0 when ``n`` is 0)."""
    return float(total / n) if n else 0.0


def load_weights(weights: dict[str, float] | str, where: str = "weights") -> dict[str, float]:
    """Weights given inline, or a JSON file holding ``{"weights": {...}}`` or a flat map."""
    if isinstance(weights, dict):
        return {str(k): float(v) for k, v in weights.items()}
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ConfigError(f"{where}: weights file {weights!r} not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: {weights}: invalid JSON ({exc})") from None
    data = data.get("weights", data) if isinstance(data, dict) else None
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{where}: {weights}: expected a mapping of column -> weight")
    try:
        return {str(k): float(v) for k, v in data.items()}
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {weights}: weights must be numbers") from None


def combine(
    columns: dict[str, np.ndarray], normalizers: dict[str, Normalizer], weights: dict[str, float]
) -> np.ndarray:
    """``sum_i w_i * normalise_i(x_i)`` for one batch."""
    return weighted_sum({n: normalizers[n].transform(columns[n]) for n in weights}, weights)


def weighted_sum(normalised: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """``sum_i w_i * normalised_i``, added in ``weights`` order."""
    n = len(next(iter(normalised.values()))) if normalised else 0
    total = np.zeros(n)
    for name, w in weights.items():
        total += w * normalised[name]
    return total
