"""Normalise several score columns over a corpus and combine them with weights.

``fit`` sees every value of a column once (whole corpus) and returns a
:class:`Normalizer`; ``transform`` maps values to the normalised scale:

- ``zscore``: ``(x - mean) / std`` (population std; a constant column maps to 0);
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
from dataclasses import dataclass
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
                out = (below + upto) / (2.0 * len(ref))
        else:
            out = x.copy()
        out[~np.isfinite(x)] = 0.0
        return out

    def summary(self) -> dict:
        if self.method == "zscore":
            return {"method": self.method, "mean": self.mean, "std": self.std}
        if self.method == "percentile":
            n = 0 if self.sorted_values is None else len(self.sorted_values)
            return {"method": self.method, "count": n}
        return {"method": self.method}


def fit(values: np.ndarray, method: Method) -> Normalizer:
    """Fit a normaliser on all of a column's values (non-finite ones ignored)."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if method == "zscore":
        if len(x) == 0:
            return Normalizer(method, 0.0, 0.0)
        return Normalizer(method, float(x.mean()), float(x.std()))
    if method == "percentile":
        return Normalizer(method, sorted_values=np.sort(x))
    return Normalizer(method)


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
    n = len(next(iter(columns.values()))) if columns else 0
    total = np.zeros(n)
    for name, w in weights.items():
        total += w * normalizers[name].transform(columns[name])
    return total
