"""Writers: atomic table files and a deterministic shard cutter.

Determinism: equal table content gives byte-identical files, however the content was
sliced, chunked or filtered before. Tables are re-laid out into fresh buffers before
writing (a slice can carry stale validity bits past its end, or an all-valid bitmap
that a fresh array would not have), Arrow IPC is written uncompressed in record
batches of ``BATCH_ROWS``, and Parquet with zstd level ``ZSTD_LEVEL`` in row groups
of ``BATCH_ROWS`` (Parquet carries no write timestamp).

Atomicity: each file is written through ``winnow.files.atomic_file`` (a hidden
temporary name in its own directory, fsynced, renamed into place), so a reader sees
the whole file or none, with the usual ``0644``-style mode.
"""

from __future__ import annotations

import errno
import fcntl
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from winnow.files import atomic_file

BATCH_ROWS = 16_384  # Arrow record batch and Parquet row group size
ZSTD_LEVEL = 3
EXTENSIONS = {"arrow": ".arrow", "parquet": ".parquet"}
_FICLONE = 0x40049409  # linux/fs.h: share the source's extents (btrfs, XFS, ...)


def write_table(path: Path, table: pa.Table, fmt: str = "arrow", durable: bool = True) -> int:
    """Write ``table`` atomically as Arrow IPC (file format) or Parquet; returns its size.

    ``durable=False`` skips the fsyncs: the rename still makes the file appear whole
    or not at all to other processes (enough for ``kill -9``), but not after a power
    loss. The runner uses it for intermediate parts, which the ledger re-checks.
    """
    if fmt not in EXTENSIONS:
        raise ValueError(f"unknown output format {fmt!r}; expected one of {sorted(EXTENSIONS)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = _fresh(table)
    with atomic_file(path, durable) as f:
        _write(f, table, fmt)
    return path.stat().st_size


def _fresh(table: pa.Table) -> pa.Table:
    """The same rows in newly built contiguous buffers (concatenation always copies)."""
    return pa.concat_tables([table, table.schema.empty_table()]).combine_chunks()


def _write(f, table: pa.Table, fmt: str) -> None:
    if fmt == "parquet":
        pq.write_table(
            table,
            f,
            row_group_size=BATCH_ROWS,
            compression="zstd",
            compression_level=ZSTD_LEVEL,
        )
        return
    options = pa.ipc.IpcWriteOptions(compression=None)
    with pa.ipc.new_file(f, table.schema, options=options) as writer:
        writer.write_table(table, max_chunksize=BATCH_ROWS)


def ipc_rows(path: Path) -> int:
    """Rows in an Arrow IPC file, read from its footer and batch headers (no data copy)."""
    with pa.memory_map(str(path)) as source:
        reader = pa.ipc.open_file(source)
        return sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))


def table_rows(path: Path) -> int:
    """Rows in an Arrow IPC or Parquet file, from its metadata."""
    if Path(path).suffix.lower() == ".parquet":
        return pq.ParquetFile(path).metadata.num_rows
    return ipc_rows(path)


def clone_or_copy(src: Path, dst: Path) -> None:
    """``dst`` becomes an independent copy of ``src``: a reflink where the filesystem
    shares extents (instant; later edits of either file do not show in the other),
    else a byte copy. Never a hard link, which would alias the two files."""
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        try:
            fcntl.ioctl(fout.fileno(), _FICLONE, fin.fileno())
            return
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL, errno.ENOTTY):
                raise
    shutil.copyfile(src, dst)  # in-kernel copy (sendfile) where available


def read_table(path: Path) -> pa.Table:
    """Read a table written by ``write_table`` (format from the extension)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pq.read_table(path)
    if suffix in (".arrow", ".ipc", ".feather"):
        with pa.memory_map(str(path)) as source:
            try:
                return pa.ipc.open_file(source).read_all()
            except pa.ArrowInvalid:
                source.seek(0)
                return pa.ipc.open_stream(source).read_all()
    raise ValueError(f"{path}: unknown table file extension {suffix!r}")


class ShardWriter:
    """Cuts a stream of tables into numbered shards of at most ``max_rows`` rows and
    about ``max_bytes`` bytes (a single larger row gets a shard of its own).

    Cuts depend only on the concatenated rows, never on how the stream was sliced
    into tables, so the same rows always give byte-identical shards. Sizes are a
    per-row estimate of ``table.nbytes`` (value bytes plus offsets; validity bitmaps
    are left out because their presence depends on how an array was built).
    All tables must share one schema. If rows never arrive but a schema does, one
    empty shard is written so that the output still records its schema.
    """

    def __init__(
        self,
        directory: Path,
        fmt: str = "arrow",
        max_rows: int = 100_000,
        max_bytes: int = 256 * 2**20,
        prefix: str = "shard",
    ):
        if fmt not in EXTENSIONS:
            raise ValueError(f"unknown shard format {fmt!r}; expected one of {sorted(EXTENSIONS)}")
        if max_rows <= 0 or max_bytes <= 0:
            raise ValueError("max_rows and max_bytes must be positive")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.fmt, self.max_rows, self.max_bytes, self.prefix = fmt, max_rows, max_bytes, prefix
        self._schema: pa.Schema | None = None
        self._pending: list[pa.Table] = []
        self._rows = 0
        self._bytes = 0
        self._shards: list[dict] = []
        self._closed = False

    def write(self, table: pa.Table) -> None:
        """Append rows; full shards are written as soon as the next row would not fit."""
        if self._closed:
            raise ValueError("ShardWriter is closed")
        if self._schema is None:
            self._schema = table.schema
        elif not table.schema.equals(self._schema):
            raise ValueError(
                f"table schema differs from the first table's:\n{table.schema}\n"
                f"expected:\n{self._schema}"
            )
        else:
            table = table.replace_schema_metadata(self._schema.metadata)
        prefix = np.concatenate(([0], np.cumsum(row_bytes(table))))  # bytes before row i
        pos = 0
        while pos < table.num_rows:
            n = self._fit(prefix, pos)
            if n == 0:
                self._flush()
                continue
            self._pending.append(table.slice(pos, n))
            self._rows += n
            self._bytes += int(prefix[pos + n] - prefix[pos])
            pos += n

    def _fit(self, prefix: np.ndarray, pos: int) -> int:
        """How many rows from ``pos`` fit into the open shard (at least 1 if it is empty)."""
        budget = self.max_bytes - self._bytes
        within = int(np.searchsorted(prefix, prefix[pos] + budget, "right")) - 1 - pos
        n = min(self.max_rows - self._rows, within, len(prefix) - 1 - pos)
        return max(n, 1) if self._rows == 0 else max(n, 0)

    def _flush(self) -> None:
        table = pa.concat_tables(self._pending) if self._pending else self._schema.empty_table()
        name = f"{self.prefix}-{len(self._shards):05d}{EXTENSIONS[self.fmt]}"
        size = write_table(self.directory / name, table, self.fmt)
        self._shards.append({"file": name, "rows": table.num_rows, "bytes": size})
        self._pending, self._rows, self._bytes = [], 0, 0

    def close(self) -> list[dict]:
        """Write the last shard; one ``{"file", "rows", "bytes"}`` dict per shard.

        Shards of this prefix left in the directory by an earlier, longer run are
        removed, so the directory holds exactly the shards listed.
        """
        if not self._closed:
            self._closed = True
            if self._pending or (not self._shards and self._schema is not None):
                self._flush()
            self._remove_stale()
        return list(self._shards)

    def _remove_stale(self) -> None:
        ours = re.compile(rf"{re.escape(self.prefix)}-\d{{5,}}{re.escape(EXTENSIONS[self.fmt])}")
        written = {m["file"] for m in self._shards}
        for path in self.directory.iterdir():
            if ours.fullmatch(path.name) and path.name not in written:
                path.unlink()


def row_bytes(table: pa.Table) -> np.ndarray:
    """Estimated bytes of each row (int64), independent of how the table is sliced."""
    total = np.zeros(table.num_rows, dtype=np.int64)
    for col in table.columns:
        total += _array_row_bytes(col.combine_chunks() if col.num_chunks != 1 else col.chunk(0))
    return total


def _array_row_bytes(arr: pa.Array) -> np.ndarray:
    t = arr.type
    if pa.types.is_dictionary(t):
        t, arr = t.index_type, arr.indices
    if pa.types.is_null(t):
        return np.zeros(len(arr), dtype=np.int64)
    if _is_binary_like(t):
        lengths = pc.fill_null(pc.binary_length(arr), 0).to_numpy().astype(np.int64)
        return lengths + _offset_width(t)
    if pa.types.is_struct(t):
        sizes = np.zeros(len(arr), dtype=np.int64)
        for child in arr.flatten():
            sizes += _array_row_bytes(child)
        return sizes
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_map(t):
        return _list_row_bytes(arr, _offset_width(t))
    try:
        width = max(t.bit_width // 8, 1)
    except ValueError:
        width = 8  # other variable-width types: a flat guess
    return np.full(len(arr), width, dtype=np.int64)


def _list_row_bytes(arr: pa.Array, offset_width: int) -> np.ndarray:
    child = _array_row_bytes(arr.flatten())
    lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy().astype(np.int64)
    ends = np.cumsum(lengths)
    prefix = np.concatenate(([0], np.cumsum(child)))
    return prefix[ends] - prefix[ends - lengths] + offset_width


def _is_binary_like(t: pa.DataType) -> bool:
    return (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
    )


def _offset_width(t: pa.DataType) -> int:
    large = pa.types.is_large_string(t) or pa.types.is_large_binary(t)
    return 8 if large or pa.types.is_large_list(t) else 4
