"""The two stage contracts.

A **map stage** turns one Arrow table into kept rows (and optionally rejected rows
with a ``reason`` column). It is pure and deterministic given its params and seed;
``setup`` runs once per worker process for expensive state such as a model.

A **global stage** needs the whole corpus: it reads the materialised output of the
stage before it and yields ``Output`` chunks in a deterministic order.

Every stage declares ``name`` (its registry name) and ``Params`` (a pydantic
model; unknown keys are rejected before any data is read), and may declare:

- ``materialize``: the pass ends after this stage, so editing what follows reuses its
  output (tag once, select many). Expensive and attribute-producing stages set it;
  YAML ``materialize:`` overrides it per stage.
- ``resources``: worker processes, rows per ``process`` call and GPUs the stage needs;
  the runner sizes the stage's pass from them (YAML ``resources:`` overrides fields).
- ``requires``: importable modules and the pip extra that provides each, checked when
  the pipeline is validated.
- ``prepare`` (driver, once per pass) and ``side_outputs`` (files written outside the
  part files, covered by the pass's completion record).
- for global stages, ``spark_backend``: the import path of its Spark backend.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pyarrow as pa
import pyarrow.dataset as ds
from pydantic import BaseModel, ConfigDict, Field

from winnow.io.writers import ipc_rows, read_table
from winnow.table import conform, unify_schemas


class Params(BaseModel):
    """Base for stage params: strict about unknown keys; attribute docstrings become
    the help text ``winnow stages`` shows."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class Resources(BaseModel):
    """What one stage needs to run; the runner sizes the stage's pass from it."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)

    workers: int | None = Field(default=None, gt=0)
    """At most this many worker processes for the stage's pass (a model-backed stage: 1,
    so one model is loaded, not one per core); None: the runner's worker count."""
    batch_rows: int | None = Field(default=None, gt=0)
    """Rows per ``process`` call (the chunk is fed in slices of this size); None: the
    whole chunk at once."""
    gpus: int = Field(default=0, ge=0)
    """GPUs each worker of the stage needs."""


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
    materialize: ClassVar[bool] = False
    resources: ClassVar[Resources] = Resources()
    requires: ClassVar[dict[str, str]] = {}

    def __init__(
        self,
        params: Params,
        *,
        stage_id: str,
        seed: int,
        run_dir: Path | None = None,
        resources: Resources | None = None,
    ):
        self.params = params
        self.stage_id = stage_id
        self.seed = seed
        self.run_dir = run_dir  # the run directory, for stages with side outputs (buckets)
        if resources is not None:
            self.resources = resources  # the class default after the YAML override

    def prepare(self) -> None:
        """Build shared artifacts (a converted model, a skill graph) once, in the driver,
        before the pass's workers start (default: nothing). Must be deterministic."""

    def side_outputs(self) -> list[Path]:
        """Files or folders (under ``run_dir``) the stage writes besides its parts; the
        pass's completion record covers them (default: none)."""
        return []


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
    spark_backend: ClassVar[str | None] = None
    """``package.module:function`` of the stage's Spark backend, imported lazily (see
    ``winnow.spark.backends``); None: on Spark the stage runs on the driver."""

    def run(self, data: Materialized, workdir: Path) -> Iterator[Output]:
        raise NotImplementedError
