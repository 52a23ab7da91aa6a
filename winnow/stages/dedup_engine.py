"""The local engine the dedup stages share (DuckDB/numpy/scipy over materialised Arrow).

Both stages run in three steps over the materialised input:

1. **Scan** every input file in order, in slices of ``batch_rows``, and spill one
   Parquet part per slice to the workdir: the row's position, id, keep-policy
   column and the dedup keys (key hash, or MinHash band keys and signatures).
2. **Decide** in DuckDB (memory-limited, spilling to the workdir): group rows,
   rank each group by the keep policy and record, per position, whether the row is
   kept, its group size and the kept row's id. Groups, centres and winners depend
   on ids only, so results do not depend on sharding, worker count or input order.
3. **Emit** one ``Output`` per input file, in input order, streaming the decisions
   back in position order.

The math (normalisation, shingles, signatures, band keys, star edges, keep order)
lives in ``winnow.kernels`` and is shared with the Spark backend.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from winnow.errors import InputError
from winnow.kernels import clusters
from winnow.stages.base import Materialized, Output, Params
from winnow.table import mark_rejected, set_column

KeepPolicy = clusters.KeepPolicy


class DedupParams(Params):
    keep: KeepPolicy = "lowest_id"
    """Which row of a duplicate group is kept: the lowest id, the highest
    ``keep_column`` (``highest_score``) or the smallest ``keep_column`` (``oldest``);
    nulls last, ties to the lowest id."""
    keep_column: str | None = None
    """The score (``highest_score``) or date (``oldest``) column the keep policy ranks by."""
    batch_rows: int = Field(8192, ge=1)
    """Rows per scan slice (and per spilled Parquet part)."""
    memory_limit: str = "4GB"
    """DuckDB's memory limit; beyond it DuckDB spills to the workdir."""

    @model_validator(mode="after")
    def _keep_needs_column(self):
        if self.keep != "lowest_id" and not self.keep_column:
            raise ValueError(f"keep: {self.keep} needs keep_column")
        return self


def require_columns(data: Materialized, columns: list[str | None]) -> None:
    missing = [c for c in columns if c and c not in data.schema.names]
    if missing:
        raise InputError(f"input has no column(s) {', '.join(missing)}")


def scan(data: Materialized, columns: list[str], rows: int) -> Iterator[tuple[int, pa.Table]]:
    """``(position of the first row, slice)`` over all files, in order."""
    pos = 0
    for table in data.tables(columns):
        for start in range(0, table.num_rows, rows):
            part = table.slice(start, rows)
            yield pos, part
            pos += part.num_rows


def fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def connect_duckdb(workdir: Path, memory_limit: str):
    import duckdb

    tmp = fresh_dir(workdir / "duckdb_tmp")
    return duckdb.connect(
        config={"temp_directory": str(tmp), "memory_limit": memory_limit},
    )


def check_unique_ids(con, parts: str) -> None:
    dupes = con.execute(
        f"SELECT id FROM read_parquet('{parts}') GROUP BY id HAVING count(*) > 1 LIMIT 3"
    ).fetchall()
    if dupes:
        shown = ", ".join(repr(d[0]) for d in dupes)
        raise InputError(f"ids must be unique; repeated: {shown}")


def emit(
    data: Materialized,
    reader: pa.RecordBatchReader,
    finish: Callable[[pa.Table, pa.Table], Output],
) -> Iterator[Output]:
    """Pair each input file with the next ``num_rows`` decision rows (position order)."""
    pending: list[pa.RecordBatch] = []
    buffered = 0
    for table in data.tables():
        while buffered < table.num_rows:
            batch = reader.read_next_batch()
            pending.append(batch)
            buffered += batch.num_rows
        rows = pa.Table.from_batches(pending, reader.schema).combine_chunks()
        decision, rest = rows.slice(0, table.num_rows), rows.slice(table.num_rows)
        pending, buffered = rest.to_batches(), rest.num_rows
        yield finish(table, decision)


def split_decision(
    table: pa.Table, decision: pa.Table, prefix: str, added: list[str]
) -> tuple[pa.Table, pa.Table]:
    """Kept rows gain the ``added`` decision columns; the others a reason naming the
    kept row."""
    keep = decision["keep"]
    kept = table.filter(keep)
    for name in added:
        kept = set_column(kept, name, decision[name].filter(keep).combine_chunks())
    dropped = pc.invert(keep)
    reasons = pc.binary_join_element_wise(prefix, decision["kept_id"].filter(dropped), "")
    return kept, mark_rejected(table.filter(dropped), reasons.combine_chunks())


def no_rows(table: pa.Table, columns: dict[str, pa.DataType]) -> Output:
    """The output for an empty input file: no rows, the usual columns."""
    kept = table
    for name, type_ in columns.items():
        kept = set_column(kept, name, pa.array([], type_))
    return Output(kept, mark_rejected(table, pa.array([], pa.string())))
