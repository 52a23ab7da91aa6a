"""``combine``: normalise score columns over the whole corpus and sum them with weights.

Example::

    - id: quality_score
      use: combine
      params:
        normalize: zscore            # or percentile, none
        weights: {dclm_score: 1.0, fineweb_edu: 0.5, gopher_alpha_words_ratio: 0.25}
        # weights: runs/meta_rater/weights.json   # learned weights, {"weights": {...}}
        output: quality

Fitting reads each input column once (DuckDB-free, numpy over the materialised Arrow
files; the fitted statistics do not depend on row order, see ``fit``); the output
keeps every row and column in input order and adds ``output``.
The fitted normalisers and weights are written to ``combine-<stage id>.json`` in the
run directory. See :mod:`winnow.scorers.combine` for the math and the weights hook.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator

from winnow.errors import ConfigError
from winnow.files import write_json_atomic
from winnow.scorers.combine import Method, combine, fit, load_weights
from winnow.stages.base import GlobalStage, Materialized, Output, Params
from winnow.table import set_column


class CombineParams(Params):
    weights: dict[str, float] | str
    """Column -> weight, or a path to a JSON file with ``{"weights": {...}}``."""
    normalize: Method = "zscore"
    """How each column is normalised over the corpus before weighting: ``zscore``,
    ``percentile`` (mid-rank, in [0, 1]) or ``none``."""
    per_column: dict[str, Method] = Field(default_factory=dict)
    """Override ``normalize`` for some columns."""
    output: str = "quality_score"
    """The column the weighted sum is written to (float64)."""

    @field_validator("weights")
    @classmethod
    def _weights(cls, value):
        if isinstance(value, dict) and not value:
            raise ValueError("give at least one column weight")
        if isinstance(value, str):
            try:
                load_weights(value)  # fail early on a missing or malformed file
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return value


def score_values(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A numeric column as float64 (nulls become NaN; booleans 0/1)."""
    if pa.types.is_boolean(column.type):
        column = pc.cast(column, pa.int8())
    column = pc.cast(column, pa.float64())
    return pc.fill_null(column, float("nan")).to_numpy(zero_copy_only=False)


class Combine(GlobalStage):
    """Weighted sum of per-column normalised scores, fitted over the whole corpus."""

    name = "combine"
    spark_backend = "winnow.spark.backends.combine:run"
    Params = CombineParams

    def weights(self, schema: pa.Schema) -> dict[str, float]:
        """Column -> weight, checked against the input ``schema``."""
        weights = load_weights(self.params.weights, f"{self.stage_id}.params.weights")
        missing = [c for c in weights if c not in schema.names]
        if missing:
            raise ConfigError(
                f"{self.stage_id}: combine input columns not found: {', '.join(missing)} "
                f"(available: {', '.join(schema.names)})"
            )
        return weights

    def method(self, column: str) -> Method:
        return self.params.per_column.get(column, self.params.normalize)

    def run(self, data: Materialized, workdir: Path) -> Iterator[Output]:
        p = self.params
        weights = self.weights(data.schema)
        columns = list(weights)
        fitted = {}
        for name in columns:
            parts = [score_values(t.column(name)) for t in data.tables(columns=[name])]
            values = np.concatenate(parts) if parts else np.zeros(0)
            fitted[name] = fit(values, self.method(name))
        self.write_summary(weights, fitted)
        for table in data.tables():
            cols = {name: score_values(table.column(name)) for name in columns}
            score = combine(cols, fitted, weights)
            yield Output(kept=set_column(table, p.output, pa.array(score, pa.float64())))

    def side_outputs(self) -> list[Path]:
        return [self.summary_path()] if self.run_dir is not None else []

    def summary_path(self) -> Path:
        return Path(self.run_dir) / f"combine-{self.stage_id}.json"

    def write_summary(self, weights, fitted) -> None:
        if self.run_dir is None:
            return
        summary = {
            "stage": self.stage_id,
            "output": self.params.output,
            "weights": weights,
            "normalizers": {name: n.summary() for name, n in fitted.items()},
        }
        write_json_atomic(self.summary_path(), summary)
