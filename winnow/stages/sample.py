"""``sample``: keep a seeded random fraction of rows, decided by each row's id."""

from __future__ import annotations

import pyarrow as pa
from pydantic import Field

from winnow.hashing import unit_interval
from winnow.stages.base import MapStage, Output, Params
from winnow.table import ID, mark_rejected, split_by_mask


class SampleParams(Params):
    fraction: float = Field(gt=0, le=1)
    """Expected share of rows kept (each row independently)."""
    by: str = ID
    """Column whose value decides membership (rows with equal values go together)."""


class Sample(MapStage):
    """Bernoulli sample: a row is kept when hash(seed, value) < fraction.

    Decided per row from its id, so the same rows are kept whatever the sharding,
    worker count or input order, and a smaller fraction keeps a subset of a larger one.
    """

    name = "sample"
    Params = SampleParams

    def process(self, table):
        u = unit_interval(table.column(self.params.by).cast(pa.string()), self.seed)
        kept, dropped = split_by_mask(table, pa.array(u < self.params.fraction))
        return Output(kept, mark_rejected(dropped, "sampled_out"))
