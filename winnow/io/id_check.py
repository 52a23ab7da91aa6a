"""Duplicate input ids, reported at read time with the file and line of the repeat.

Ids must be unique (dedup keeps or drops rows by id; provenance points at ids).
Chunks are read in parallel, so no reader sees them all: each read task writes its
rows' ids and lines to a small ``ids-NNNNN.parquet`` beside its part, and once the
pass is done ``first_duplicate`` finds, with DuckDB over those files (it spills to
disk when the ids do not fit in memory), the earliest row in input order whose id
occurred before.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from winnow.io.writers import write_table
from winnow.table import ID

IDS_SCHEMA = pa.schema([(ID, pa.string()), ("part", pa.int64()), ("line", pa.int64())])
_LINE_BITS = 40  # position = part << 40 | line: input order as one integer


def ids_path(folder: Path, index: int) -> Path:
    return folder / f"ids-{index:05d}.parquet"


def write_ids(folder: Path, index: int, ids: pa.ChunkedArray | pa.Array, lines: pa.Array) -> Path:
    """Record a read task's ids and their lines (or row indices)."""
    part = pa.array([index] * len(lines), pa.int64())
    path = ids_path(folder, index)
    write_table(path, pa.table([ids, part, lines], schema=IDS_SCHEMA), "parquet", durable=False)
    return path


def first_duplicate(folder: Path, sources: list[str]) -> str | None:
    """``"FILE:LINE: duplicate id 'x' (first at FILE:LINE)"`` for the earliest repeat
    among the ``ids-*.parquet`` files of ``folder`` (``sources[i]``: the file read by
    task ``i``), or None when every id is unique."""
    import duckdb

    files = [str(f) for f in sorted(folder.glob("ids-*.parquet"))]
    if not files:
        return None
    con = duckdb.connect(":memory:", config={"temp_directory": str(folder / ".duckdb_tmp")})
    con.execute("SET threads = 2")
    listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    con.execute(
        f"CREATE TEMP VIEW ids AS SELECT id, (part << {_LINE_BITS}) | line AS pos "
        f"FROM read_parquet([{listed}])"
    )
    row = con.execute(
        """
        WITH dup AS (SELECT id FROM ids GROUP BY id HAVING count(*) > 1)
        SELECT id, list(pos ORDER BY pos)[1:2] AS seen FROM ids SEMI JOIN dup USING (id)
        GROUP BY id ORDER BY seen[2] LIMIT 1
        """
    ).fetchone()
    con.close()
    if row is None:
        return None
    dup, (first, second) = row

    def where(pos: int) -> str:
        return f"{sources[pos >> _LINE_BITS]}:{pos & ((1 << _LINE_BITS) - 1)}"

    return f"{where(second)}: duplicate id {dup!r} (first at {where(first)})"
