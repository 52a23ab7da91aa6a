"""Input readers: plan deterministic chunks over the inputs, then read one chunk.

``plan_chunks`` expands the input spec into files (sorted) and cuts each file into
ranges of about ``chunk_rows`` rows; ``read_chunk`` turns one range into the document
schema (``id``, ``text``, then metadata) plus a table of quarantined rows.

Choices, so that the output does not depend on how a file was chunked:

- Positions. JSONL rows are numbered by 1-based line number (as editors show them),
  Parquet / Arrow / HF rows by 0-based row index. A derived id is ``NAME:POSITION``
  where NAME is the file's path relative to the parent of its input directory
  (``data/part1.jsonl:17`` for ``path: data/``, ``data/*.jsonl`` or
  ``data/part1.jsonl``); for ``format: hf`` NAME is the dataset's directory name or
  hub id (plus ``/split`` for a dataset dict or a hub dataset).
- Chunking. Uncompressed local JSONL is cut at newlines every ``chunk_rows`` lines
  (one cheap newline-counting pass at plan time; ``start``/``stop`` are byte offsets
  and ``first_line`` the line number at ``start``). Compressed or remote JSONL is one
  chunk per file (``stop == -1``, read whole into memory): a compressed stream cannot
  be entered mid-way without decompressing everything before it.
  Parquet is cut at row-group boundaries only (part of a row group costs as much to
  decode as all of it); Arrow IPC and HF datasets at any row.
- JSONL metadata. Scalars keep their JSON type (string, int64, float64, bool; null
  when every value in the chunk is null). Objects and arrays become canonical JSON
  text (keys sorted, null members omitted, integral floats written as integers), so a
  value reads the same whatever else is in its chunk. Date-like strings stay strings
  (pyarrow's timestamp inference is undone). Metadata columns are sorted by name.
  Types can still differ between chunks (a field absent from one chunk, int64 in one
  and float64 in another): ``unify_schemas`` / ``conform`` resolve that
  deterministically. Parquet / Arrow / HF metadata keep their declared types.
- A metadata field literally named ``id`` or ``text`` that is not the id/text field
  is renamed ``orig_id`` / ``orig_text``.

Fast path: JSONL goes through ``pyarrow.json.read_json``; only a chunk with a problem
(bad line, mixed types, invalid UTF-8) is re-read line by line in Python, which finds
and names the bad lines. Both paths give the same table for the same good rows.

Quarantined rows (``ReadResult.rejected``) carry the row's id (its ``id_field`` when
it has one, else the derived id), the raw line, a short reason, the file and line.
"""

from __future__ import annotations

import glob
import gzip
import json
import os
import posixpath
import re
from dataclasses import dataclass
from functools import lru_cache

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import pyarrow.parquet as pq

from winnow.config import InputSpec
from winnow.errors import InputError
from winnow.table import ID, TEXT

JSONL_EXTS = (".jsonl", ".json", ".ndjson")
PARQUET_EXTS = (".parquet",)
ARROW_EXTS = (".arrow", ".ipc", ".feather")
COMPRESSION_EXTS = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd"}
FORMAT_EXTS = {"jsonl": JSONL_EXTS, "parquet": PARQUET_EXTS, "arrow": ARROW_EXTS}

REJECTED_SCHEMA = pa.schema(
    [("id", pa.string()), ("raw", pa.string()), ("reason", pa.string()),
     ("file", pa.string()), ("line", pa.int64())]
)  # fmt: skip
BASE_SCHEMA = pa.schema([(ID, pa.string()), (TEXT, pa.string())])
_WS = b" \t\r\n"
_WS_CODES = np.frombuffer(_WS, np.uint8)
_BLANK = re.compile(rb"[ \t\r\n]*")
_SCAN_BLOCK = 4 * 2**20
_NEWLINE_WINDOW = 2**20


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


# --------------------------------------------------------------------------- planning


def plan_chunks(spec: InputSpec, chunk_rows: int) -> list[Chunk]:
    """All chunks of the input, in a deterministic order (sorted files, then ranges)."""
    if chunk_rows <= 0:
        raise ValueError("chunk_rows must be positive")
    chunks: list[Chunk] = []
    for path, fmt, name in _resolve(spec):
        for start, stop, first_line in _ranges(path, fmt, chunk_rows, spec):
            chunks.append(Chunk(path, fmt, len(chunks), start, stop, name, first_line))
    return chunks


def _resolve(spec: InputSpec) -> list[tuple[str, str, str]]:
    """``(path, fmt, name)`` per input file, duplicates removed, names made unique."""
    out: list[tuple[str, str, str]] = []
    seen_paths: set[str] = set()
    seen_names: set[str] = set()
    for entry in spec.paths():
        found = (
            [(entry, "hf", _hf_name(entry, spec))] if spec.format == "hf" else _expand(entry, spec)
        )
        for path, fmt, name in found:
            key = path if _is_url(path) else os.path.abspath(path)
            if key in seen_paths:
                continue
            if name in seen_names:
                name = path  # same relative name under two inputs: fall back to the path
            seen_paths.add(key)
            seen_names.add(name)
            out.append((path, fmt, name))
    return out


def _is_url(path: str) -> bool:
    return "://" in path


def _has_magic(path: str) -> bool:
    return any(c in path for c in "*?[")


def _expand(entry: str, spec: InputSpec) -> list[tuple[str, str, str]]:
    """Files named by one path entry (file, directory, glob or URL), sorted."""
    if _is_url(entry):
        fs, root = fsspec.core.url_to_fs(entry)
        listing = _list_fs(fs, root, entry)
        anchor = posixpath.dirname(_static_dir(root, not _has_magic(root) and fs.isdir(root)))
        named = [(fs.unstrip_protocol(p), posixpath.relpath(p, anchor), e) for p, e in listing]
    else:
        listing = _list_local(entry)
        anchor = os.path.dirname(os.path.abspath(_static_dir(entry, os.path.isdir(entry))))
        named = [(p, _posix(os.path.relpath(os.path.abspath(p), anchor)), e) for p, e in listing]
    out = []
    for path, name, explicit in named:
        fmt = _file_format(path, spec.format, explicit)
        if fmt is None and explicit:
            raise InputError(f"{path}: unknown file type; set input.format")
        if fmt is not None:
            out.append((path, fmt, name))
    return out


def _posix(path: str) -> str:
    return path.replace(os.sep, "/")


def _static_dir(path: str, is_dir: bool) -> str:
    """The directory whose parent anchors relative names: the dir, glob prefix or parent."""
    if _has_magic(path):
        parts = path.split("/")
        static = parts[: next(i for i, p in enumerate(parts) if _has_magic(p))]
        return "/".join(static) or ("/" if path.startswith("/") else ".")
    path = path.rstrip("/") or "/"
    return path if is_dir else (os.path.dirname(path) or ".")


def _list_local(entry: str) -> list[tuple[str, bool]]:
    """``(file, named_explicitly)`` for a local entry; files found in directories are not."""
    if _has_magic(entry):
        matches = sorted(glob.glob(entry, recursive=True))
        if not matches:
            raise InputError(f"{entry}: no files match this pattern")
        out: list[tuple[str, bool]] = []
        for m in matches:
            out += _walk_local(m) if os.path.isdir(m) else [(m, True)]
        return out
    if os.path.isdir(entry):
        return _walk_local(entry)
    if os.path.isfile(entry):
        return [(entry, True)]
    raise InputError(f"{entry}: no such file or directory")


def _walk_local(root: str) -> list[tuple[str, bool]]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith((".", "_"))]
        found += [os.path.join(dirpath, f) for f in filenames if not f.startswith((".", "_"))]
    return [(p, False) for p in sorted(found)]


def _list_fs(fs, root: str, entry: str) -> list[tuple[str, bool]]:
    """Like ``_list_local`` for an fsspec filesystem (paths without protocol)."""
    if _has_magic(root):
        matches = sorted(fs.glob(root))
        if not matches:
            raise InputError(f"{entry}: no files match this pattern")
        out: list[tuple[str, bool]] = []
        for m in matches:
            out += _find_fs(fs, m) if fs.isdir(m) else [(m, True)]
        return out
    if fs.isdir(root):
        return _find_fs(fs, root)
    if fs.isfile(root):
        return [(root, True)]
    raise InputError(f"{entry}: no such file or directory")


def _find_fs(fs, root: str) -> list[tuple[str, bool]]:
    keep = [p for p in fs.find(root) if not posixpath.basename(p).startswith((".", "_"))]
    return [(p, False) for p in sorted(keep)]


def _split_compression(path: str) -> tuple[str, str | None]:
    """``("x.jsonl", "zstd")`` for ``x.jsonl.zst``."""
    lower = path.lower()
    for ext, kind in COMPRESSION_EXTS.items():
        if lower.endswith(ext):
            return lower[: -len(ext)], kind
    return lower, None


def _file_format(path: str, spec_format: str, explicit: bool) -> str | None:
    """The format of one file: from its extension for ``auto``; else the spec's.

    Files found inside a directory are kept only when their extension fits the
    format; a file named explicitly is read as the spec's format whatever its name.
    """
    stem, compression = _split_compression(path)
    detected = next(
        (f for f, exts in FORMAT_EXTS.items() if stem.endswith(exts)),
        None,
    )
    if compression and detected != "jsonl":
        detected = None
    if spec_format == "auto":
        return detected
    return spec_format if explicit or detected == spec_format else None


def _ranges(path: str, fmt: str, chunk_rows: int, spec: InputSpec) -> list[tuple[int, int, int]]:
    if fmt == "jsonl":
        return _jsonl_ranges(path, chunk_rows)
    if fmt == "parquet":
        return _parquet_ranges(path, chunk_rows)
    if fmt == "arrow":
        return _row_ranges(_arrow_num_rows(path), chunk_rows)
    return _row_ranges(_hf_dataset(path, spec.hf_split, spec.hf_config).num_rows, chunk_rows)


def _row_ranges(num_rows: int, chunk_rows: int) -> list[tuple[int, int, int]]:
    if num_rows == 0:
        return [(0, 0, 0)]
    return [(s, min(s + chunk_rows, num_rows), 0) for s in range(0, num_rows, chunk_rows)]


def _jsonl_ranges(path: str, chunk_rows: int) -> list[tuple[int, int, int]]:
    """Byte ranges cut after every ``chunk_rows``-th newline, with their first line number."""
    if _is_url(path) or _split_compression(path)[1]:
        return [(0, -1, 1)]
    size = os.path.getsize(path)
    if size <= chunk_rows:  # cannot hold more than chunk_rows lines
        return [(0, size, 1)]
    ranges, start, first, lines, pos = [], 0, 1, 0, 0
    buf = bytearray(_SCAN_BLOCK)
    view = np.frombuffer(buf, np.uint8)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            is_newline = view[:n] == 10
            count = int(np.count_nonzero(is_newline))
            cut_at = (lines // chunk_rows + 1) * chunk_rows  # 1-based newline to cut after
            if cut_at <= lines + count:
                newlines = np.flatnonzero(is_newline)
                for k in range(cut_at - lines - 1, count, chunk_rows):
                    cut = pos + int(newlines[k]) + 1
                    ranges.append((start, cut, first))
                    start, first = cut, lines + k + 2
            lines += count
            pos += n
    if start < pos or not ranges:
        ranges.append((start, pos, first))
    return ranges


# --------------------------------------------------------------------------- reading


def read_chunk(chunk: Chunk, spec: InputSpec) -> ReadResult:
    """Read one chunk into ``id``, ``text`` and metadata, quarantining bad rows."""
    if chunk.fmt == "jsonl":
        return _read_jsonl(chunk, spec)
    if chunk.fmt == "parquet":
        table = _read_parquet(chunk)
    elif chunk.fmt == "arrow":
        table = _read_arrow(chunk)
    elif chunk.fmt == "hf":
        ds = _hf_dataset(chunk.path, spec.hf_split, spec.hf_config)
        table = ds.with_format("arrow")[chunk.start : chunk.stop]
    else:
        raise InputError(f"{chunk.path}: unknown format {chunk.fmt!r}")
    return _finish_tabular(table, chunk, spec)


def _open(path: str, mode: str = "rb"):
    return fsspec.open(path, mode).open() if _is_url(path) else open(path, mode)


def empty_rejected() -> pa.Table:
    """A zero-row table of quarantined input."""
    return REJECTED_SCHEMA.empty_table()


def _rejected(rows: list[tuple[str, str, str, str, int]]) -> pa.Table:
    cols = {f.name: [r[i] for r in rows] for i, f in enumerate(REJECTED_SCHEMA)}
    return pa.Table.from_pydict(cols, schema=REJECTED_SCHEMA)


def _fail_or_keep(chunk: Chunk, spec: InputSpec, bad: list[tuple]) -> pa.Table:
    """Raise on the first bad row with ``on_error: fail``; else the rejected table."""
    if bad and spec.on_error == "fail":
        _, _, reason, path, line = min(bad, key=lambda r: r[4])
        raise InputError(f"{path}:{line}: {reason}")
    return _rejected(sorted(bad, key=lambda r: r[4]))


# ----- JSONL


def _read_jsonl(chunk: Chunk, spec: InputSpec) -> ReadResult:
    data = _jsonl_bytes(chunk)
    if _BLANK.fullmatch(data):
        return ReadResult(BASE_SCHEMA.empty_table(), empty_rejected())
    result = _jsonl_fast(data, chunk, spec)
    return result if result is not None else _jsonl_slow(data, chunk, spec)


def _jsonl_bytes(chunk: Chunk) -> bytes:
    """The chunk's bytes: a byte range of a plain file, or a whole decompressed file."""
    compression = _split_compression(chunk.path)[1]
    try:
        with _open(chunk.path) as f:
            if compression == "gzip":
                with gzip.GzipFile(fileobj=f) as g:
                    data = g.read()
            elif compression == "zstd":
                import zstandard

                reader = zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)
                data = reader.read()
            else:
                f.seek(chunk.start)
                data = f.read() if chunk.stop < 0 else f.read(chunk.stop - chunk.start)
    except FileNotFoundError:
        raise InputError(f"{chunk.path}: no such file or directory") from None
    except Exception as exc:  # noqa: BLE001 - gzip/zstd/fsspec errors have no common base
        raise InputError(f"{chunk.path}: cannot read ({exc})") from None
    if chunk.start == 0 and data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # a UTF-8 byte-order mark is not part of the first line
    return data


def _valid_utf8(data: bytes) -> bool:
    offsets = pa.array([0, len(data)], pa.int64()).buffers()[1]
    try:
        pa.LargeStringArray.from_buffers(1, offsets, pa.py_buffer(data)).validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _jsonl_fast(data: bytes, chunk: Chunk, spec: InputSpec) -> ReadResult | None:
    """Parse with pyarrow; ``None`` when the chunk needs the line-by-line path."""
    if not _valid_utf8(data):
        return None
    try:
        table = _read_json(data)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    lines = _row_lines(data, chunk.first_line, table.num_rows)
    if lines is None:
        return None
    col = table.column(spec.text_field) if spec.text_field in table.column_names else None
    if col is None or not pa.types.is_string(col.type):
        return None
    ids = _fast_ids(table, spec, chunk.name, lines)
    if ids is None:
        return None
    bad = []
    if col.null_count:
        bad, keep = _null_text_rows(data, table, chunk, spec, lines, ids)
        table, ids = table.filter(keep), ids.filter(keep)
    rejected = _fail_or_keep(chunk, spec, bad)
    meta = {n: _json_metadata(table.column(n)) for n in _meta_names(table.column_names, spec)}
    return ReadResult(_assemble(ids, table.column(spec.text_field), meta), rejected)


def _newlines(arr: np.ndarray) -> np.ndarray:
    """Positions of ``\\n`` bytes, found window by window (cache-sized temporaries)."""
    step = _NEWLINE_WINDOW
    found = [np.flatnonzero(arr[s : s + step] == 10) + s for s in range(0, len(arr), step)]
    return np.concatenate(found) if found else np.zeros(0, np.int64)


def _row_lines(data: bytes, first_line: int, num_rows: int) -> pa.Array | None:
    """Line number of each parsed row, or ``None`` if rows and lines do not pair up.

    pyarrow skips blank lines and would read two objects on one line as two rows, so
    non-blank lines are located here and must match the row count one for one.
    """
    arr = np.frombuffer(data, np.uint8)
    ends = _newlines(arr)
    starts = np.concatenate(([0], ends + 1))
    if starts[-1] == len(arr):
        starts = starts[:-1]  # the text after a final newline is not a line
    else:
        ends = np.concatenate((ends, [len(arr)]))
    # Blank lines are empty, or start with whitespace and contain nothing else.
    maybe_blank = np.flatnonzero(
        (ends == starts) | np.isin(arr[np.minimum(starts, len(arr) - 1)], _WS_CODES)
    )
    blank = [i for i in maybe_blank.tolist() if not data[starts[i] : ends[i]].strip(_WS)]
    numbers = np.arange(first_line, first_line + len(starts), dtype=np.int64)
    if blank:
        numbers = np.delete(numbers, blank)
    return pa.array(numbers) if len(numbers) == num_rows else None


# Field paths (tuples of names, "[]" for list items) that pyarrow inferred as
# timestamps in this process. Read with an explicit string type from then on, which
# avoids parsing every chunk twice; the result is the same with or without it.
_STRING_PATHS: set[tuple[str, ...]] = set()


def _read_json(data: bytes) -> pa.Table:
    """``pyarrow.json.read_json`` with date-like strings kept as strings."""
    learned = set(_STRING_PATHS)
    table = _pj_read(data, learned)
    if learned and any(table.column(p[0]).null_count == table.num_rows for p in learned):
        learned = set()  # a forced column may be absent from this chunk: infer afresh
        table = _pj_read(data, learned)
    temporal = _temporal_paths(table.schema)
    if temporal:
        _STRING_PATHS.update(temporal)
        table = _pj_read(data, learned | temporal)
    table.validate()  # pyarrow can build invalid lists of nulls; such chunks go slow
    return table


def _pj_read(data: bytes, string_paths: set[tuple[str, ...]]) -> pa.Table:
    parse_opts = None
    if string_paths:
        schema = pa.schema(_schema_tree(string_paths))
        parse_opts = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer")
    try:
        return pj.read_json(pa.BufferReader(data), parse_options=parse_opts)
    except pa.ArrowInvalid as exc:
        if "straddl" not in str(exc):  # a line longer than pyarrow's block: retry bigger
            raise
    read_opts = pj.ReadOptions(block_size=min(len(data) + 1, 2**31 - 1))
    return pj.read_json(pa.BufferReader(data), read_options=read_opts, parse_options=parse_opts)


def _temporal_paths(schema: pa.Schema) -> set[tuple[str, ...]]:
    found: set[tuple[str, ...]] = set()

    def walk(t: pa.DataType, path: tuple[str, ...]) -> None:
        if pa.types.is_temporal(t):
            found.add(path)
        elif pa.types.is_struct(t):
            for f in t:
                walk(f.type, path + (f.name,))
        elif pa.types.is_list(t) or pa.types.is_large_list(t):
            walk(t.value_type, path + ("[]",))

    for field in schema:
        walk(field.type, (field.name,))
    return found


def _schema_tree(paths: set[tuple[str, ...]]) -> list[pa.Field]:
    """Explicit fields that type exactly ``paths`` as strings (nested as needed)."""
    groups: dict[str, set[tuple[str, ...]]] = {}
    for path in sorted(paths):
        groups.setdefault(path[0], set()).add(path[1:])
    return [pa.field(name, _subtree(rest)) for name, rest in groups.items()]


def _subtree(rests: set[tuple[str, ...]]) -> pa.DataType:
    if () in rests:
        return pa.string()
    if all(r[0] == "[]" for r in rests):
        return pa.list_(_subtree({r[1:] for r in rests}))
    return pa.struct(_schema_tree(rests))


def _derived_ids(name: str, positions: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise(name, pc.cast(positions, pa.string()), ":")


def _fast_ids(table: pa.Table, spec: InputSpec, name: str, lines: pa.Array) -> pa.Array | None:
    """Ids from ``id_field`` (string or integer column) or derived; ``None`` for others."""
    if not spec.id_field or spec.id_field not in table.column_names:
        return _derived_ids(name, lines)
    col = table.column(spec.id_field).combine_chunks()
    if pa.types.is_null(col.type):
        return _derived_ids(name, lines)
    if not (pa.types.is_string(col.type) or pa.types.is_integer(col.type)):
        return None  # str() of floats and bools differs from Arrow's cast: go slow
    given = pc.cast(col, pa.string())
    return pc.coalesce(given, _derived_ids(name, lines)) if given.null_count else given


def _null_text_rows(data, table, chunk, spec, lines, ids):
    """Classify rows whose text parsed as null (missing or null); returns (bad, keep)."""
    keep = pc.is_valid(table.column(spec.text_field))
    raw_lines = data.split(b"\n")
    bad = []
    for i in np.flatnonzero(~keep.to_numpy(zero_copy_only=False)):
        line = lines[i].as_py()
        raw = raw_lines[line - chunk.first_line].rstrip(b"\r")
        obj = json.loads(raw)
        reason = "null_text" if spec.text_field in obj else "missing_text"
        bad.append((ids[i].as_py(), raw.decode("utf-8", "replace"), reason, chunk.path, line))
    return bad, keep


def _canonical(value):
    """JSON value normalised so it prints the same whatever chunk it was read in.

    Keys sorted, null members dropped (Arrow cannot tell them from missing ones),
    integers beyond int64 and integral floats treated as pyarrow's JSON reader does.
    """
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in sorted(value.items()) if v is not None}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        value = float(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _dumps(value) -> str:
    return json.dumps(_canonical(value), ensure_ascii=False, separators=(",", ":"))


def _json_metadata(col: pa.ChunkedArray) -> pa.ChunkedArray | pa.Array:
    """Keep scalar columns; nested ones become canonical JSON text."""
    if pa.types.is_struct(col.type) or pa.types.is_list(col.type):
        return _to_json(col.combine_chunks())
    return col


_ESCAPES = [("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"),
            ("\b", "\\b"), ("\f", "\\f")]  # fmt: skip


def _to_json(arr: pa.Array) -> pa.Array:
    """Vectorised ``_dumps`` of each value of an Arrow array (nulls stay null)."""
    t = arr.type
    if pa.types.is_struct(t):
        return _struct_json(arr)
    if pa.types.is_list(t):
        return _list_json(arr)
    if pa.types.is_string(t):
        return _string_json(arr)
    if pa.types.is_boolean(t):
        return pc.if_else(arr, "true", "false")
    if pa.types.is_integer(t):
        return pc.cast(arr, pa.string())
    if pa.types.is_null(t):
        return pa.nulls(len(arr), pa.string())
    return pa.array([None if v is None else _dumps(v) for v in arr.to_pylist()], pa.string())


def _wrap(open_: str, body: pa.Array, close: str, valid: pa.Array) -> pa.Array:
    out = pc.binary_join_element_wise(open_, body, close, "")
    return pc.if_else(valid, out, pa.scalar(None, pa.string()))


def _struct_json(arr: pa.StructArray) -> pa.Array:
    # Each present member renders as ',"key":value'; absent ones as ''. (pyarrow's
    # null_handling="skip" join drops rows, so the commas are handled here.)
    children = dict(zip([f.name for f in arr.type], arr.flatten(), strict=True))
    body = pa.array([""] * len(arr), pa.string())
    for key in sorted(children):
        member = pc.binary_join_element_wise(
            "," + json.dumps(key, ensure_ascii=False) + ":", _to_json(children[key]), ""
        )
        body = pc.binary_join_element_wise(body, pc.fill_null(member, ""), "")
    return _wrap("{", pc.utf8_slice_codeunits(body, 1), "}", pc.is_valid(arr))


def _list_json(arr: pa.ListArray) -> pa.Array:
    items = pc.fill_null(_to_json(arr.flatten()), "null")
    lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy()
    offsets = pa.array(np.concatenate(([0], np.cumsum(lengths))), pa.int32())
    body = pc.binary_join(pa.ListArray.from_arrays(offsets, items), ",")
    return _wrap("[", body, "]", pc.is_valid(arr))


def _string_json(arr: pa.Array) -> pa.Array:
    if pc.any(pc.match_substring_regex(arr, "[\\x00-\\x07\\x0b\\x0e-\\x1f]")).as_py():
        return pa.array([None if v is None else _dumps(v) for v in arr.to_pylist()], pa.string())
    for old, new in _ESCAPES:
        arr = pc.replace_substring(arr, old, new)
    return pc.binary_join_element_wise('"', arr, '"', "")


def _meta_names(names, spec: InputSpec) -> list[str]:
    return [n for n in names if n not in (spec.text_field, spec.id_field)]


def _assemble(ids, text, meta: dict, sort: bool = True) -> pa.Table:
    """``id``, ``text``, then metadata (sorted by name for JSONL; clashing names renamed)."""
    meta = {("orig_" + k if k in (ID, TEXT) else k): v for k, v in meta.items()}
    names = sorted(meta) if sort else list(meta)
    cols = [ids, pc.cast(text, pa.string())] + [meta[k] for k in names]
    return pa.Table.from_arrays(cols, names=[ID, TEXT, *names])


def _parse_line(raw: bytes, text_field: str) -> tuple[str | None, object]:
    """``(None, obj)`` for a good line; ``(reason, parsed value or None)`` for a bad one."""
    try:
        s = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid_utf8", None
    try:
        obj = json.loads(s)
    except json.JSONDecodeError as exc:
        return f"malformed_json: {exc.msg}", None
    if not isinstance(obj, dict):
        return f"not_object: {type(obj).__name__}", obj
    if text_field not in obj:
        return "missing_text", obj
    text = obj[text_field]
    if text is None:
        return "null_text", obj
    if not isinstance(text, str):
        return f"non_string_text: {type(text).__name__}", obj
    return None, obj


def _row_id(obj, spec: InputSpec, name: str, line: int) -> str:
    if spec.id_field and isinstance(obj, dict) and obj.get(spec.id_field) is not None:
        return str(obj[spec.id_field])
    return f"{name}:{line}"


def _jsonl_slow(data: bytes, chunk: Chunk, spec: InputSpec) -> ReadResult:
    """Line-by-line parse that quarantines (or fails on) each bad line."""
    good, ids, bad = [], [], []
    for i, raw in enumerate(data.split(b"\n")):
        if not raw.strip(_WS):
            continue
        line = chunk.first_line + i
        raw = raw.rstrip(b"\r")
        reason, obj = _parse_line(raw, spec.text_field)
        row_id = _row_id(obj, spec, chunk.name, line)
        if reason:
            bad.append((row_id, raw.decode("utf-8", "replace"), reason, chunk.path, line))
            if spec.on_error == "fail":
                break
        else:
            good.append(obj)
            ids.append(row_id)
    rejected = _fail_or_keep(chunk, spec, bad)
    fields = _meta_names(dict.fromkeys(k for obj in good for k in obj), spec)
    meta = {k: _python_column([obj.get(k) for obj in good]) for k in fields}
    text = pa.array([obj[spec.text_field] for obj in good], pa.string())
    return ReadResult(_assemble(pa.array(ids, pa.string()), text, meta), rejected)


def _python_column(values: list) -> pa.Array:
    """Type a metadata column like pyarrow's JSON inference (nested/mixed -> JSON text)."""
    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return pa.nulls(len(values))
    if kinds == {bool}:
        return pa.array(values, pa.bool_())
    if kinds == {str}:
        return pa.array(values, pa.string())
    if kinds <= {int, float}:
        ints = kinds == {int} and all(v is None or -(2**63) <= v < 2**63 for v in values)
        return (
            pa.array(values, pa.int64())
            if ints
            else pa.array([None if v is None else float(v) for v in values], pa.float64())
        )
    return pa.array(
        [v if v is None or isinstance(v, str) else _dumps(v) for v in values], pa.string()
    )


# ----- Parquet, Arrow IPC, HF datasets


def _parquet_file(path: str) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(_open(path) if _is_url(path) else path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file or directory") from None
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from None


def _parquet_ranges(path: str, chunk_rows: int) -> list[tuple[int, int, int]]:
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
    source = _open(path) if _is_url(path) else pa.memory_map(path)
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


def _arrow_num_rows(path: str) -> int:
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


def _hf_name(entry: str, spec: InputSpec) -> str:
    """Dataset name for derived ids: dir name or hub id, plus ``/split`` where splits exist."""
    if os.path.isdir(entry):
        name = os.path.basename(os.path.abspath(entry))
        single = os.path.exists(os.path.join(entry, "state.json"))  # a saved Dataset
        return name if single else f"{name}/{spec.hf_split}"
    if entry.startswith(("/", ".", "~")):
        raise InputError(f"{entry}: no such file or directory")
    return f"{entry.removeprefix('hf://datasets/').strip('/')}/{spec.hf_split}"


@lru_cache(maxsize=8)
def _hf_dataset(entry: str, split: str, config: str | None):
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
    if not _is_stringlike(text.type):
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
        table, ids = table.filter(keep), ids.filter(keep)
    rejected = _fail_or_keep(chunk, spec, bad)
    meta = {n: table.column(n) for n in _meta_names(table.column_names, spec)}
    return ReadResult(_assemble(ids, table.column(spec.text_field), meta, sort=False), rejected)


def _is_stringlike(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _tabular_ids(table: pa.Table, spec: InputSpec, name: str, rows: pa.Array) -> pa.Array:
    derived = _derived_ids(name, rows)
    if not spec.id_field or spec.id_field not in table.column_names:
        return derived
    col = table.column(spec.id_field).combine_chunks()
    if _is_stringlike(col.type) or pa.types.is_integer(col.type):
        given = pc.cast(col, pa.string())
    else:
        given = pa.array([None if v is None else str(v) for v in col.to_pylist()], pa.string())
    return pc.coalesce(given, derived)


# --------------------------------------------------------------------------- schemas


def unify_schemas(schemas: list[pa.Schema]) -> pa.Schema:
    """One schema for tables read from different chunks of the same input.

    Fields in order of first appearance; a type seen with null is that type; int64
    with float64 is float64; any other disagreement is string. Field metadata (e.g.
    the tokenizer hash on ``tokens``) is kept from a field's first appearance.
    """
    types: dict[str, pa.DataType] = {}
    metadata: dict[str, dict | None] = {}
    for schema in schemas:
        for field in schema:
            old = types.get(field.name)
            types[field.name] = field.type if old is None else _merge_types(old, field.type)
            metadata.setdefault(field.name, field.metadata)
    fields = [pa.field(name, t, metadata=metadata[name]) for name, t in types.items()]
    return pa.schema(fields, metadata=schemas[0].metadata if schemas else None)


def _merge_types(a: pa.DataType, b: pa.DataType) -> pa.DataType:
    if a == b or pa.types.is_null(b):
        return a
    if pa.types.is_null(a):
        return b
    if {a, b} == {pa.int64(), pa.float64()}:
        return pa.float64()
    return pa.string()


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Cast ``table`` to ``schema`` (from ``unify_schemas``), adding missing columns as nulls."""
    cols = []
    for field in schema:
        if field.name not in table.column_names:
            cols.append(pa.nulls(table.num_rows, field.type))
            continue
        col = table.column(field.name)
        if col.type != field.type:
            col = _cast_column(col, field.type)
        cols.append(col)
    return pa.Table.from_arrays(cols, schema=schema)


def _cast_column(col: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray | pa.Array:
    if pa.types.is_string(target) and not _is_stringlike(col.type):
        return pa.array([None if v is None else _dumps(v) for v in col.to_pylist()], pa.string())
    return pc.cast(col, target)
