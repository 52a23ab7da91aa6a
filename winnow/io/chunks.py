"""What every format reader shares: the chunk, the read result and quarantined rows.

A quarantined row (``ReadResult.rejected``) carries the row's id (its ``id_field``
when it has one, else the derived id ``NAME:POSITION``), the raw line, a short
reason, the file and the line (JSONL: 1-based line number; tabular: row index).
"""

from __future__ import annotations

from dataclasses import dataclass

import fsspec
import pyarrow as pa
import pyarrow.compute as pc

from winnow.config import InputSpec
from winnow.errors import InputError
from winnow.table import ID, TEXT

COMPRESSION_EXTS = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd"}

REJECTED_SCHEMA = pa.schema(
    [("id", pa.string()), ("raw", pa.string()), ("reason", pa.string()),
     ("file", pa.string()), ("line", pa.int64())]
)  # fmt: skip
BASE_SCHEMA = pa.schema([(ID, pa.string()), (TEXT, pa.string())])


@dataclass(frozen=True)
class Chunk:
    """One unit of reading work; ``index`` is its place in the global order."""

    path: str  # local path or fsspec URL (hub id / dataset dir for "hf")
    fmt: str  # "jsonl" | "parquet" | "arrow" | "hf"
    index: int
    start: int  # jsonl: byte offset; others: row index
    stop: int  # exclusive; -1 = to the end (compressed or remote jsonl)
    name: str = ""  # stable file name used in derived ids
    first_line: int = 1  # jsonl: line number of the line at ``start``


@dataclass
class ReadResult:
    """Documents read from a chunk, and the input rows quarantined on the way."""

    table: pa.Table
    rejected: pa.Table
    lines: pa.Array  # int64: each kept row's line (JSONL) or row index, as in ``rejected``


def is_url(path: str) -> bool:
    """An fsspec URL (``s3://``, ``hf://``) rather than a local path."""
    return "://" in path


def split_compression(path: str) -> tuple[str, str | None]:
    """``("x.jsonl", "zstd")`` for ``x.jsonl.zst``."""
    lower = path.lower()
    for ext, kind in COMPRESSION_EXTS.items():
        if lower.endswith(ext):
            return lower[: -len(ext)], kind
    return lower, None


def open_input(path: str, mode: str = "rb"):
    """Open a local path or an fsspec URL."""
    return fsspec.open(path, mode).open() if is_url(path) else open(path, mode)


def input_error(path: str, exc: OSError) -> InputError:
    """A one-line error for an input file or directory the OS would not open or read."""
    if isinstance(exc, FileNotFoundError):
        return InputError(f"{path}: no such file or directory")
    if isinstance(exc, PermissionError):
        return InputError(f"{path}: permission denied")
    if isinstance(exc, IsADirectoryError):
        return InputError(f"{path}: is a directory")
    return InputError(f"{path}: cannot read ({exc.strerror or exc})")


def empty_rejected() -> pa.Table:
    """A zero-row table of quarantined input."""
    return REJECTED_SCHEMA.empty_table()


def rejected_table(rows: list[tuple[str, str, str, str, int]]) -> pa.Table:
    """Quarantined rows ``(id, raw, reason, file, line)`` as a table."""
    cols = {f.name: [r[i] for r in rows] for i, f in enumerate(REJECTED_SCHEMA)}
    return pa.Table.from_pydict(cols, schema=REJECTED_SCHEMA)


def fail_or_keep(chunk: Chunk, spec: InputSpec, bad: list[tuple]) -> pa.Table:
    """Raise on the first bad row with ``on_error: fail``; else the rejected table."""
    if bad and spec.on_error == "fail":
        _, _, reason, path, line = min(bad, key=lambda r: r[4])
        raise InputError(f"{path}:{line}: {reason}")
    return rejected_table(sorted(bad, key=lambda r: r[4]))


def derived_ids(name: str, positions: pa.Array) -> pa.Array:
    """``NAME:POSITION`` ids for rows without an ``id_field`` value."""
    return pc.binary_join_element_wise(name, pc.cast(positions, pa.string()), ":")


def meta_names(names, spec: InputSpec) -> list[str]:
    """Column names other than the text and id fields."""
    return [n for n in names if n not in (spec.text_field, spec.id_field)]


def assemble(ids, text, meta: dict, sort: bool = True) -> pa.Table:
    """``id``, ``text``, then metadata (sorted by name for JSONL; clashing names renamed)."""
    meta = {("orig_" + k if k in (ID, TEXT) else k): v for k, v in meta.items()}
    names = sorted(meta) if sort else list(meta)
    cols = [ids, pc.cast(text, pa.string())] + [meta[k] for k in names]
    return pa.Table.from_arrays(cols, names=[ID, TEXT, *names])
