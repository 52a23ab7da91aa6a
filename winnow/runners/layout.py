"""The run directory's layout, shared by the runner and its executors.

::

    RUN/stages/<pass>/part-00000.arrow   materialised pass output (+ part-*.json markers)
    RUN/stages/<pass>/_SUCCESS           the pass's hash, per-stage counts, side outputs
    RUN/rejected/<stage>/part-*.arrow    dropped rows with ``stage`` and ``reason``
    RUN/data/shard-*.arrow|parquet       final output (``data/<sink>/`` with several sinks)
    RUN/manifest.json, RUN/ledger.json

Stages may write side outputs elsewhere under ``RUN/`` (``decompose``'s buckets, a
skill graph); the pass's ``_SUCCESS`` records their hashes.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from winnow.files import tree_digest
from winnow.io.writers import write_table
from winnow.table import STAGE

READ_STAGE = "read"  # the pseudo-stage that reads the input


def pass_dir(run_dir: Path, pass_id: str) -> Path:
    return run_dir / "stages" / pass_id


def part_path(folder: Path, index: int) -> Path:
    return folder / f"part-{index:05d}.arrow"


def marker_path(folder: Path, index: int) -> Path:
    return folder / f"part-{index:05d}.json"


def pass_files(run_dir: Path, pass_id: str) -> list[Path]:
    """A finished pass's part files, in order."""
    return sorted(pass_dir(run_dir, pass_id).glob("part-*.arrow"))


def rejected_dir(run_dir: Path, stage_id: str) -> Path:
    return run_dir / "rejected" / stage_id


def file_records(run_dir: Path, paths) -> dict[str, dict]:
    """``{path relative to RUN: {"bytes", "xxh3"}}`` for files a pass wrote."""
    return {
        Path(p).relative_to(run_dir).as_posix(): {
            "bytes": Path(p).stat().st_size,
            "xxh3": tree_digest(Path(p)),
        }
        for p in sorted(paths)
    }


def file_damage(run_dir: Path, records: dict[str, dict]) -> str | None:
    """``"path: what is wrong"`` for the first recorded file that is missing or differs
    from its record; None when all match."""
    for rel, want in sorted(records.items()):
        path = run_dir / rel
        if not path.is_file():
            return f"{rel}: missing"
        size = path.stat().st_size
        if size != want["bytes"]:
            return f"{rel}: {size} bytes, {want['bytes']} recorded"
        if tree_digest(path) != want["xxh3"]:
            return f"{rel}: content differs from its record"
    return None


def write_part(folder: Path, index: int, table: pa.Table) -> Path:
    path = part_path(folder, index)
    write_table(path, table, durable=False)
    return path


def write_rejected(run_dir: Path, stage_id: str, index: int, rejected: pa.Table) -> Path:
    """A stage's rejected rows of one part, with the ``stage`` column added."""
    folder = rejected_dir(run_dir, stage_id)
    folder.mkdir(parents=True, exist_ok=True)
    rejected = rejected.append_column(STAGE, pa.array([stage_id] * rejected.num_rows, pa.string()))
    return write_part(folder, index, rejected)
