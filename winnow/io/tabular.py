"""Tabular readers: Parquet, Arrow IPC (file or stream) and Hugging Face datasets.

Metadata columns keep their declared types; rows are numbered by 0-based row index.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from winnow.config import InputSpec
from winnow.errors import InputError
from winnow.io.chunks import (
    Chunk,
    ReadResult,
    assemble,
    derived_ids,
    fail_or_keep,
    input_error,
    is_url,
    meta_names,
    open_input,
)
from winnow.table import is_stringlike


def _parquet_file(path: str) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(open_input(path) if is_url(path) else path)
    except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        raise input_error(path, exc) from None
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from None


def parquet_ranges(path: str, chunk_rows: int) -> list[tuple[int, int, int]]:
    """Consecutive row groups merged up to ``chunk_rows`` rows; groups are never split."""
    with _parquet_file(path) as pf:
        sizes = [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)]
    ranges, start, row = [], 0, 0
    for n in sizes:
        if row > start and row + n - start > chunk_rows:
            ranges.append((start, row, 0))
            start = row
        row += n
    ranges.append((start, row, 0))
    return ranges


def _read_parquet(chunk: Chunk) -> pa.Table:
    """The row groups overlapping the chunk's rows, sliced to exactly those rows."""
    with _parquet_file(chunk.path) as pf:
        groups, first_row, row = [], 0, 0
        for g in range(pf.num_row_groups):
            n = pf.metadata.row_group(g).num_rows
            if row < chunk.stop and row + n > chunk.start:
                first_row = row if not groups else first_row
                groups.append(g)
            row += n
        if not groups:
            return pf.schema_arrow.empty_table()
        table = pf.read_row_groups(groups)
    return table.slice(chunk.start - first_row, chunk.stop - chunk.start)


def _arrow_batches(path: str):
    """``(schema, iterator of record batches)`` for an IPC file or stream."""
    try:
        source = open_input(path) if is_url(path) else pa.memory_map(path)
    except OSError as exc:
        raise input_error(path, exc) from None
    try:
        reader = pa.ipc.open_file(source)
        return reader.schema, (reader.get_batch(i) for i in range(reader.num_record_batches))
    except pa.ArrowInvalid:
        source.seek(0)
    try:
        reader = pa.ipc.open_stream(source)
    except pa.ArrowInvalid as exc:
        raise InputError(f"{path}: not a readable Arrow IPC file ({exc})") from None
    return reader.schema, iter(reader)


def arrow_num_rows(path: str) -> int:
    return sum(b.num_rows for b in _arrow_batches(path)[1])


def _read_arrow(chunk: Chunk) -> pa.Table:
    schema, batches = _arrow_batches(chunk.path)
    picked, row = [], 0
    for batch in batches:
        lo, hi = max(chunk.start - row, 0), min(chunk.stop - row, batch.num_rows)
        if hi > lo:
            picked.append(batch.slice(lo, hi - lo))
        row += batch.num_rows
        if row >= chunk.stop:
            break
    return pa.Table.from_batches(picked, schema)


def hf_name(entry: str, spec: InputSpec) -> str:
    """Dataset name for derived ids: dir name or hub id, plus ``/split`` where splits exist."""
    if os.path.isdir(entry):
        name = os.path.basename(os.path.abspath(entry))
        single = os.path.exists(os.path.join(entry, "state.json"))  # a saved Dataset
        return name if single else f"{name}/{spec.hf_split}"
    if entry.startswith(("/", ".", "~")):
        raise InputError(f"{entry}: no such file or directory")
    return f"{entry.removeprefix('hf://datasets/').strip('/')}/{spec.hf_split}"


@lru_cache(maxsize=8)
def hf_dataset(entry: str, split: str, config: str | None):
    """A ``datasets.Dataset`` from a ``save_to_disk`` dir, a local data dir or the Hub."""
    import datasets

    try:
        if os.path.isdir(entry) and _is_saved_dataset(entry):
            ds = datasets.load_from_disk(entry)
            return ds[split] if isinstance(ds, datasets.DatasetDict) else ds
        repo = entry.removeprefix("hf://datasets/").strip("/")
        return datasets.load_dataset(repo, name=config, split=split)
    except KeyError:
        raise InputError(f"{entry}: no split {split!r}") from None
    except Exception as exc:  # noqa: BLE001 - the hub raises many types; name the input
        raise InputError(f"{entry}: cannot load as a Hugging Face dataset ({exc})") from None


def _is_saved_dataset(path: str) -> bool:
    return any(os.path.exists(os.path.join(path, f)) for f in ("state.json", "dataset_dict.json"))


def _finish_tabular(table: pa.Table, chunk: Chunk, spec: InputSpec) -> ReadResult:
    """Rename/cast ``text``, derive ids, quarantine null texts (row index = line)."""
    names = table.column_names
    if spec.text_field not in names:
        raise InputError(
            f"{chunk.path}: no text column {spec.text_field!r} (columns: {', '.join(names)})"
        )
    text = table.column(spec.text_field)
    if not is_stringlike(text.type):
        raise InputError(
            f"{chunk.path}: text column {spec.text_field!r} has type {text.type}, expected string"
        )
    rows = pa.array(np.arange(chunk.start, chunk.start + table.num_rows, dtype=np.int64))
    ids = _tabular_ids(table, spec, chunk.name, rows)
    bad = []
    if text.null_count:
        keep = pc.is_valid(text)
        dropped = table.filter(pc.invert(keep))
        for row_id, row, obj in zip(
            ids.filter(pc.invert(keep)).to_pylist(),
            rows.filter(pc.invert(keep)).to_pylist(),
            dropped.to_pylist(),
            strict=True,
        ):
            raw = json.dumps(obj, ensure_ascii=False, default=str)
            bad.append((row_id, raw, "null_text", chunk.path, row))
        table, ids, rows = table.filter(keep), ids.filter(keep), rows.filter(keep)
    rejected = fail_or_keep(chunk, spec, bad)
    meta = {n: table.column(n) for n in meta_names(table.column_names, spec)}
    out = assemble(ids, table.column(spec.text_field), meta, sort=False)
    return ReadResult(out, rejected, rows)


def _tabular_ids(table: pa.Table, spec: InputSpec, name: str, rows: pa.Array) -> pa.Array:
    derived = derived_ids(name, rows)
    if not spec.id_field or spec.id_field not in table.column_names:
        return derived
    col = table.column(spec.id_field).combine_chunks()
    if is_stringlike(col.type) or pa.types.is_integer(col.type):
        given = pc.cast(col, pa.string())
    else:
        given = pa.array([None if v is None else str(v) for v in col.to_pylist()], pa.string())
    return pc.coalesce(given, derived)


def read_tabular(chunk: Chunk, spec: InputSpec) -> ReadResult:
    """Read one Parquet / Arrow / HF chunk into ``id``, ``text`` and metadata."""
    if chunk.fmt == "parquet":
        table = _read_parquet(chunk)
    elif chunk.fmt == "arrow":
        table = _read_arrow(chunk)
    elif chunk.fmt == "hf":
        ds = hf_dataset(chunk.path, spec.hf_split, spec.hf_config)
        table = ds.with_format("arrow")[chunk.start : chunk.stop]
    else:
        raise InputError(f"{chunk.path}: unknown format {chunk.fmt!r}")
    return _finish_tabular(table, chunk, spec)
