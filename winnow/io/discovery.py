"""Input discovery and chunk planning: files from the input spec, then row ranges.

``plan_chunks`` expands the input spec into files (sorted, duplicates removed) and
cuts each file into ranges of about ``chunk_rows`` rows, so that the output does not
depend on how a file was chunked:

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
"""

from __future__ import annotations

import fnmatch
import glob
import os
import posixpath

import fsspec
import numpy as np

from winnow.config import InputSpec
from winnow.errors import InputError
from winnow.io.chunks import Chunk, input_error, is_url, split_compression
from winnow.io.tabular import arrow_num_rows, hf_dataset, hf_name, parquet_ranges

JSONL_EXTS = (".jsonl", ".json", ".ndjson")
PARQUET_EXTS = (".parquet",)
ARROW_EXTS = (".arrow", ".ipc", ".feather")
FORMAT_EXTS = {"jsonl": JSONL_EXTS, "parquet": PARQUET_EXTS, "arrow": ARROW_EXTS}

_SCAN_BLOCK = 4 * 2**20


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
            [(entry, "hf", hf_name(entry, spec))] if spec.format == "hf" else _expand(entry, spec)
        )
        for path, fmt, name in found:
            key = path if is_url(path) else os.path.abspath(path)
            if key in seen_paths:
                continue
            if name in seen_names:
                name = path  # same relative name under two inputs: fall back to the path
            seen_paths.add(key)
            seen_names.add(name)
            out.append((path, fmt, name))
    return out


def _has_magic(path: str) -> bool:
    return any(c in path for c in "*?[")


def _expand(entry: str, spec: InputSpec) -> list[tuple[str, str, str]]:
    """Files named by one path entry (file, directory, glob or URL), sorted."""
    if is_url(entry):
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
        _check_glob_dirs(entry)
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
    for dirpath, dirnames, filenames in os.walk(root, onerror=_raise_input_error):
        dirnames[:] = [d for d in dirnames if not d.startswith((".", "_"))]
        found += [os.path.join(dirpath, f) for f in filenames if not f.startswith((".", "_"))]
    return [(p, False) for p in sorted(found)]


def _raise_input_error(exc: OSError) -> None:
    raise input_error(exc.filename, exc) from None


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError as exc:
        raise input_error(path, exc) from None


def _check_glob_dirs(pattern: str) -> None:
    """Fail naming the first directory ``pattern`` needs listed that cannot be read.

    ``glob`` skips such directories silently, which would read part of the input.
    """
    parts = pattern.split("/")
    i = next(i for i, p in enumerate(parts) if _has_magic(p))
    base = "/".join(parts[:i]) or ("/" if pattern.startswith("/") else ".")
    if os.path.isdir(base):
        _check_level(base, parts[i:])


def _check_level(base: str, rest: list[str]) -> None:
    head, tail = rest[0], rest[1:]
    if not _has_magic(head):
        if tail and os.path.isdir(os.path.join(base, head)):
            _check_level(os.path.join(base, head), tail)
        return
    if head == "**":  # zero or more directories
        dirs = [base]
        for dirpath, dirnames, _ in os.walk(base, onerror=_raise_input_error):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            dirs += [os.path.join(dirpath, d) for d in dirnames]
        if tail:
            for d in dirs:
                _check_level(d, tail)
        return
    names = _listdir(base)  # listed even for the last component: that is where files are
    if tail:
        for name in names:
            path = os.path.join(base, name)
            hidden = name.startswith(".") and not head.startswith(".")
            if not hidden and fnmatch.fnmatch(name, head) and os.path.isdir(path):
                _check_level(path, tail)


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


def _file_format(path: str, spec_format: str, explicit: bool) -> str | None:
    """The format of one file: from its extension for ``auto``; else the spec's.

    Files found inside a directory are kept only when their extension fits the
    format; a file named explicitly is read as the spec's format whatever its name.
    """
    stem, compression = split_compression(path)
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
        return parquet_ranges(path, chunk_rows)
    if fmt == "arrow":
        return _row_ranges(arrow_num_rows(path), chunk_rows)
    return _row_ranges(hf_dataset(path, spec.hf_split, spec.hf_config).num_rows, chunk_rows)


def _row_ranges(num_rows: int, chunk_rows: int) -> list[tuple[int, int, int]]:
    if num_rows == 0:
        return [(0, 0, 0)]
    return [(s, min(s + chunk_rows, num_rows), 0) for s in range(0, num_rows, chunk_rows)]


def _jsonl_ranges(path: str, chunk_rows: int) -> list[tuple[int, int, int]]:
    """Byte ranges cut after every ``chunk_rows``-th newline, with their first line number."""
    if is_url(path) or split_compression(path)[1]:
        return [(0, -1, 1)]
    size = os.path.getsize(path)
    if size <= chunk_rows:  # cannot hold more than chunk_rows lines
        return [(0, size, 1)]
    ranges, start, first, lines, pos = [], 0, 1, 0, 0
    buf = bytearray(_SCAN_BLOCK)
    view = np.frombuffer(buf, np.uint8)
    try:
        f = open(path, "rb", buffering=0)
    except OSError as exc:
        raise input_error(path, exc) from None
    with f:
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
