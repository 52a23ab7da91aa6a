"""Test helper: write rows round-robin into Arrow IPC part files."""

from pathlib import Path

import pyarrow as pa


def write_parts(folder: Path, rows: list[dict], n: int, schema=None, prefix="part") -> list[Path]:
    """``n`` files ``<prefix>-00000.arrow``...; row i goes to file ``i % n``."""
    folder.mkdir(parents=True, exist_ok=True)
    schema = schema or pa.Table.from_pylist(rows).schema
    files = []
    for i in range(n):
        path = folder / f"{prefix}-{i:05d}.arrow"
        with pa.ipc.new_file(str(path), schema) as writer:
            writer.write_table(pa.Table.from_pylist(rows[i::n], schema=schema))
        files.append(path)
    return files
