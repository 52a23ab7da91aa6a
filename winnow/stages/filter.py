"""``filter``: keep rows where a SQL boolean expression holds (DuckDB on the batch)."""

from __future__ import annotations

from pydantic import field_validator

from winnow.sql import check_boolean, connect, evaluate, require_boolean
from winnow.stages.base import MapStage, Output, Params
from winnow.table import mark_rejected, split_by_mask


class FilterParams(Params):
    keep: str
    """DuckDB SQL boolean over the row's columns, e.g. ``length(text) >= 200``.
    Rows where it is false or NULL are rejected."""
    reason: str | None = None
    """Reason recorded for rejected rows; default ``filter_failed: <keep>``."""

    _check = field_validator("keep")(check_boolean)


class Filter(MapStage):
    """Keep rows where ``keep`` holds; the rest go to ``rejected/`` with ``reason``."""

    name = "filter"
    Params = FilterParams

    def setup(self) -> None:
        self._con = connect()

    def process(self, table):
        mask = evaluate(self._con, table, {"keep": self.params.keep}).column("keep")
        require_boolean(mask, self.params.keep)
        kept, dropped = split_by_mask(table, mask)
        reason = self.params.reason or f"filter_failed: {self.params.keep}"
        return Output(kept, mark_rejected(dropped, reason))
