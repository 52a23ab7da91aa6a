"""JSONL reader (plain, gzip, zstd): one chunk into the document schema.

- Metadata. Scalars keep their JSON type (string, int64, float64, bool; null when
  every value in the chunk is null). Objects and arrays become canonical JSON text
  (keys sorted, null members omitted, integral floats written as integers), so a
  value reads the same whatever else is in its chunk. Date-like strings stay strings
  (pyarrow's timestamp inference is undone). Metadata columns are sorted by name.
  Types can still differ between chunks (a field absent from one chunk, int64 in one
  and float64 in another): ``winnow.table.unify_schemas`` / ``conform`` resolve that
  deterministically.
- Fast path. Lines go through ``pyarrow.json.read_json``; only a chunk with a problem
  (bad line, mixed types, invalid UTF-8) is re-read line by line in Python, which
  finds and names the bad lines. Both paths give the same table for the same good rows.
"""

from __future__ import annotations

import gzip
import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from winnow.config import InputSpec
from winnow.errors import InputError
from winnow.io.chunks import (
    BASE_SCHEMA,
    Chunk,
    ReadResult,
    assemble,
    derived_ids,
    empty_rejected,
    fail_or_keep,
    input_error,
    meta_names,
    open_input,
    split_compression,
)
from winnow.table import json_text

_WS = b" \t\r\n"
_WS_CODES = np.frombuffer(_WS, np.uint8)
_BLANK = re.compile(rb"[ \t\r\n]*")
_NEWLINE_WINDOW = 2**20
_ZSTD_BLOCK = 4 * 2**20
# A \\uD800-\\uDFFF escape: a lone one decodes to a str that is not valid Unicode.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def read_jsonl(chunk: Chunk, spec: InputSpec) -> ReadResult:
    data = _jsonl_bytes(chunk)
    if _BLANK.fullmatch(data):
        return ReadResult(BASE_SCHEMA.empty_table(), empty_rejected(), pa.array([], pa.int64()))
    result = _jsonl_fast(data, chunk, spec)
    return result if result is not None else _jsonl_slow(data, chunk, spec)


def _jsonl_bytes(chunk: Chunk) -> bytes:
    """The chunk's bytes: a byte range of a plain file, or a whole decompressed file."""
    compression = split_compression(chunk.path)[1]
    try:
        with open_input(chunk.path) as f:
            if compression == "gzip":
                with gzip.GzipFile(fileobj=f) as g:
                    data = g.read()
            elif compression == "zstd":
                data = _zstd_read(f, chunk.path)
            else:
                f.seek(chunk.start)
                data = f.read() if chunk.stop < 0 else f.read(chunk.stop - chunk.start)
    except InputError:
        raise
    except EOFError:
        raise InputError(f"{chunk.path}: truncated gzip stream") from None
    except OSError as exc:
        raise input_error(chunk.path, exc) from None
    except Exception as exc:  # noqa: BLE001 - gzip/zstd/fsspec errors have no common base
        raise InputError(f"{chunk.path}: cannot read ({exc})") from None
    if chunk.start == 0 and data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # a UTF-8 byte-order mark is not part of the first line
    return data


def _zstd_read(f, path: str) -> bytes:
    """Decompress every frame of a zstd file; a frame without its end is an error.

    (``zstandard``'s stream reader returns the decoded prefix of a truncated frame
    without complaint, so frames are decoded one by one and each must reach its end.)
    """
    import zstandard

    out, frame, pending = [], None, False
    while block := f.read(_ZSTD_BLOCK):
        while block:
            if frame is None:
                frame = zstandard.ZstdDecompressor().decompressobj()
            out.append(frame.decompress(block))
            pending = True
            if not frame.eof:
                break
            block, frame, pending = frame.unused_data, None, False
    if pending:
        raise InputError(f"{path}: truncated zstd stream")
    return b"".join(out)


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
        table, ids, lines = table.filter(keep), ids.filter(keep), lines.filter(keep)
    rejected = fail_or_keep(chunk, spec, bad)
    meta = {n: _json_metadata(table.column(n)) for n in meta_names(table.column_names, spec)}
    return ReadResult(assemble(ids, table.column(spec.text_field), meta), rejected, lines)


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


def _fast_ids(table: pa.Table, spec: InputSpec, name: str, lines: pa.Array) -> pa.Array | None:
    """Ids from ``id_field`` (string or integer column) or derived; ``None`` for others."""
    if not spec.id_field or spec.id_field not in table.column_names:
        return derived_ids(name, lines)
    col = table.column(spec.id_field).combine_chunks()
    if pa.types.is_null(col.type):
        return derived_ids(name, lines)
    if not (pa.types.is_string(col.type) or pa.types.is_integer(col.type)):
        return None  # str() of floats and bools differs from Arrow's cast: go slow
    given = pc.cast(col, pa.string())
    return pc.coalesce(given, derived_ids(name, lines)) if given.null_count else given


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


def _json_metadata(col: pa.ChunkedArray) -> pa.ChunkedArray | pa.Array:
    """Keep scalar columns; nested ones become canonical JSON text."""
    if pa.types.is_struct(col.type) or pa.types.is_list(col.type):
        return _to_json(col.combine_chunks())
    return col


_ESCAPES = [("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"),
            ("\b", "\\b"), ("\f", "\\f")]  # fmt: skip


def _to_json(arr: pa.Array) -> pa.Array:
    """Vectorised ``json_text`` of each value of an Arrow array (nulls stay null)."""
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
    return pa.array([None if v is None else json_text(v) for v in arr.to_pylist()], pa.string())


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
        return pa.array([None if v is None else json_text(v) for v in arr.to_pylist()], pa.string())
    for old, new in _ESCAPES:
        arr = pc.replace_substring(arr, old, new)
    return pc.binary_join_element_wise('"', arr, '"', "")


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
    if _SURROGATE_ESCAPE.search(s) and _has_lone_surrogate(obj):
        return "invalid_unicode: lone surrogate", None
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


def _has_lone_surrogate(obj) -> bool:
    """Whether a parsed JSON value holds a string (or key) that UTF-8 cannot encode."""
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _row_id(obj, spec: InputSpec, name: str, line: int) -> str:
    if spec.id_field and isinstance(obj, dict) and obj.get(spec.id_field) is not None:
        return str(obj[spec.id_field])
    return f"{name}:{line}"


def _jsonl_slow(data: bytes, chunk: Chunk, spec: InputSpec) -> ReadResult:
    """Line-by-line parse that quarantines (or fails on) each bad line."""
    good, ids, lines, bad = [], [], [], []
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
            lines.append(line)
    rejected = fail_or_keep(chunk, spec, bad)
    fields = meta_names(dict.fromkeys(k for obj in good for k in obj), spec)
    meta = {k: _python_column([obj.get(k) for obj in good]) for k in fields}
    text = pa.array([obj[spec.text_field] for obj in good], pa.string())
    table = assemble(pa.array(ids, pa.string()), text, meta)
    return ReadResult(table, rejected, pa.array(lines, pa.int64()))


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
        [v if v is None or isinstance(v, str) else json_text(v) for v in values], pa.string()
    )
