"""The two stage contracts.

A **map stage** turns one Arrow table into kept rows (and optionally rejected rows
with a ``reason`` column). It is pure and deterministic given its params and seed;
``setup`` runs once per worker process for expensive state such as a model.

A **global stage** needs the whole corpus: it reads the materialised output of the
stage before it and yields ``Output`` chunks in a deterministic order.

Every stage declares ``name`` (its registry name) and ``Params`` (a pydantic
model; unknown keys are rejected before any data is read).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pyarrow as pa
import pyarrow.dataset as ds
from pydantic import BaseModel, ConfigDict

from winnow.io.writers import ipc_rows, read_table
from winnow.table import conform, unify_schemas


class Params(BaseModel):
    """Base for stage params: strict about unknown keys; attribute docstrings become
    the help text ``winnow stages`` shows."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


@dataclass
class Output:
    """What a stage produced from one chunk of input.

    ``kept`` continues down the pipeline; ``rejected`` rows carry a ``reason``
    column; ``created`` counts rows in ``kept`` that did not come from an input row
    (e.g. a rephrased copy). Ledger rule per stage: rows in + created = kept + rejected.
    ``stats`` are numbers summed over chunks into the run manifest.
    """

    kept: pa.Table
    rejected: pa.Table | None = None
    created: int = 0
    stats: dict[str, float] = field(default_factory=dict)


class Stage:
    """Common base: holds validated params, the stage id and a per-stage seed."""

    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    Params: ClassVar[type[Params]] = Params

    def __init__(self, params: Params, *, stage_id: str, seed: int, run_dir: Path | None = None):
        self.params = params
        self.stage_id = stage_id
        self.seed = seed
        self.run_dir = run_dir  # the run directory, for stages with side outputs (buckets)


class MapStage(Stage):
    """``Table -> Output``, pure and deterministic; fused with its neighbours."""

    kind = "map"

    def setup(self) -> None:
        """Load expensive state once per worker process (default: nothing)."""

    def process(self, table: pa.Table) -> Output:
        raise NotImplementedError


class Materialized:
    """The complete output of an upstream stage: ordered Arrow IPC files.

    Files may differ slightly in schema (a metadata column absent from one input
    file); ``schema`` is their union and ``tables`` conforms each file to it.
    """

    def __init__(self, files: list[Path], schema: pa.Schema | None = None):
        self.files = list(files)
        self.schema = (
            schema
            if schema is not None
            else unify_schemas([pa.ipc.open_file(str(f)).schema for f in self.files])
        )

    def dataset(self) -> ds.Dataset:
        """A pyarrow dataset over the files (DuckDB can query it directly)."""
        return ds.dataset([str(f) for f in self.files], schema=self.schema, format="ipc")

    def tables(self, columns: list[str] | None = None) -> Iterator[pa.Table]:
        """One table per file, in order; memory-mapped, so cheap to open."""
        for path in self.files:
            table = conform(read_table(path), self.schema)
            yield table.select(columns) if columns else table

    @property
    def num_rows(self) -> int:
        return sum(ipc_rows(path) for path in self.files)


class GlobalStage(Stage):
    """Whole-corpus step (dedup, top-k, fitting, bucket writing).

    ``run`` gets the materialised input and a private scratch directory, and yields
    ``Output`` chunks in a deterministic order (independent of how the input was
    sharded or how many workers produced it).
    """

    kind = "global"

    def run(self, data: Materialized, workdir: Path) -> Iterator[Output]:
        raise NotImplementedError
