"""Length-bucket token shards: the trainer's dataset and its held-out split.

A bucket directory ``B/`` (written by the decompose stage) holds ``len_<N>/shard_*.arrow``
(each row one piece of one document, ``N`` tokens), ``concat/len_<L>/`` (the
concat-and-chunk baseline) and ``manifest.json``. Shards are memory-mapped; only
per-row doc keys, sources, groups (the optional ``group`` column decompose writes
with ``group_column``) and offsets are held in memory.

Bucket mode (Dataset Decomposition): each optimizer step draws one bucket, chosen by a
:class:`winnow.trainer.curricula.Schedule`, and ``tokens_per_step / 2^k`` sequences from it.

Held-out split: a document is held out when ``xxh64(doc_id)``, mapped to [0, 1), is
below ``val_fraction``,
independent of the training seed and of which other documents exist, so variants of
one corpus (raw, curated) hold out the same documents and no variant trains on
another's validation documents. A source left with no held-out document gives up
its lowest-hash one. Doc ids are kept as 64-bit hashes (collisions are negligible
at proxy scale).

Copies of held-out text under other ids (exact duplicates a raw corpus still holds)
would leak into training, so a training row whose tokens equal those of a held-out
row of the same bucket (compared by a 64-bit hash of the row) is dropped as well:
no training sequence repeats a held-out one. Near-duplicates are not caught.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import count
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from winnow.errors import InputError
from winnow.hashing import to_unit

_LEN_DIR = re.compile(r"^len_(\d+)$")


# --------------------------------------------------------------------------- shards


def doc_keys(doc_ids: pa.Array) -> np.ndarray:
    """64-bit xxhash of each doc id (hashing each distinct id once)."""
    encoded = pc.dictionary_encode(doc_ids)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    names = encoded.dictionary.to_pylist()
    uniq = np.fromiter((xxhash.xxh64_intdigest(s) for s in names), np.uint64, len(names))
    return uniq[encoded.indices.to_numpy(zero_copy_only=False)]


def held_out(keys: np.ndarray, fraction: float) -> np.ndarray:
    """True where a doc key falls in the held-out hash range."""
    return to_unit(keys) < fraction


def trainable_id(stem: str, fraction: float, suffix: str = "") -> str:
    """``stem + suffix``, or ``stem.k + suffix`` for the first k that falls outside the
    held-out hash range: the id of a planted copy, which must train every variant
    rather than be scored beside its siblings in training."""
    ids = (f"{stem}.{k}{suffix}" if k else f"{stem}{suffix}" for k in count())
    return next(i for i in ids if not held_out(doc_keys(pa.array([i])), fraction)[0])


def _open_ipc(path: Path) -> list[pa.RecordBatch]:
    try:
        reader = pa.ipc.open_file(pa.memory_map(str(path)))
        return [reader.get_batch(i) for i in range(reader.num_record_batches)]
    except pa.ArrowInvalid:
        return list(pa.ipc.open_stream(pa.memory_map(str(path))))


class ShardTable:
    """All shards of one ``len_<N>`` directory: tokens (rows, N) memory-mapped, and per
    row its doc key, source code (into ``sources``), group code (into ``groups``; rows
    without a ``group`` column count as ``"<none>"``) and token offset in its document."""

    def __init__(self, paths: Sequence[Path], length: int, sources: list[str], groups: list[str]):
        self.length = length
        self.paths = list(paths)
        self.chunks: list[np.ndarray] = []
        keys, codes, group_codes, offsets = [], [], [], []
        for path in self.paths:
            try:
                batches = _open_ipc(path)
            except (OSError, pa.ArrowInvalid) as exc:
                raise InputError(f"{path}: not an Arrow IPC file ({exc})") from None
            for batch in batches:
                if batch.num_rows == 0:
                    continue
                missing = {"tokens", "doc_id"} - set(batch.schema.names)
                if missing:
                    raise InputError(f"{path}: missing column(s) {sorted(missing)}")
                tokens = batch.column("tokens")
                if not pa.types.is_fixed_size_list(tokens.type) or tokens.type.list_size != length:
                    raise InputError(f"{path}: tokens must be fixed_size_list[{length}]")
                if tokens.null_count:
                    raise InputError(f"{path}: tokens has null rows")
                flat = tokens.flatten().to_numpy(zero_copy_only=False)
                self.chunks.append(flat.reshape(-1, length))
                keys.append(doc_keys(batch.column("doc_id")))
                codes.append(_codes(batch, "source", sources))
                group_codes.append(_codes(batch, "group", groups))
                names = batch.schema.names
                off = batch.column("offset") if "offset" in names else pa.nulls(batch.num_rows)
                offsets.append(off.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64))
        self.bounds = np.cumsum([0] + [len(c) for c in self.chunks])
        self.doc_key = np.concatenate(keys) if keys else np.zeros(0, np.uint64)
        self.source = np.concatenate(codes) if codes else np.zeros(0, np.int32)
        self.group = np.concatenate(group_codes) if group_codes else np.zeros(0, np.int32)
        self.offset = np.concatenate(offsets) if offsets else np.zeros(0, np.int64)

    @property
    def num_rows(self) -> int:
        return int(self.bounds[-1])

    def row_hashes(self) -> np.ndarray:
        """xxh3-64 of each row's token bytes."""
        digest = xxhash.xxh3_64_intdigest
        return np.fromiter(
            (digest(row.tobytes()) for chunk in self.chunks for row in chunk),
            np.uint64,
            self.num_rows,
        )

    def tokens(self, rows: np.ndarray) -> np.ndarray:
        """Token rows, (len(rows), length), in the order given."""
        rows = np.asarray(rows, dtype=np.int64)
        which = np.searchsorted(self.bounds, rows, side="right") - 1
        out = np.empty((len(rows), self.length), dtype=self.chunks[0].dtype)
        for c in np.unique(which):
            sel = which == c
            out[sel] = self.chunks[c][rows[sel] - self.bounds[c]]
        return out


def _codes(batch: pa.RecordBatch, column: str, names: list[str]) -> np.ndarray:
    """Each row's ``column`` value as an index into ``names`` (extended as met)."""
    if column not in batch.schema.names:
        values = pa.array(["<none>"] * batch.num_rows)
    else:
        values = batch.column(column).fill_null("<none>")
    encoded = pc.dictionary_encode(values)
    local = []
    for name in encoded.dictionary.to_pylist():
        if name not in names:
            names.append(name)
        local.append(names.index(name))
    return np.asarray(local, dtype=np.int32)[encoded.indices.to_numpy(zero_copy_only=False)]


def _shards(folder: Path) -> list[Path]:
    return sorted(folder.glob("shard_*.arrow"))


# --------------------------------------------------------------------------- row sources


class TableRows:
    """A subset of one table's rows, addressed 0..num_rows-1."""

    def __init__(self, table: ShardTable, rows: np.ndarray):
        self.table, self.rows, self.length = table, rows, table.length

    @property
    def num_rows(self) -> int:
        return len(self.rows)

    @property
    def num_tokens(self) -> int:
        return self.num_rows * self.length

    def get(self, idx: np.ndarray) -> np.ndarray:
        return self.table.tokens(self.rows[idx])


class ConcatStream:
    """Concat-and-chunk over the same training pieces: documents (each copy of a
    repeated one) in a seeded random order, each document's pieces by offset, an EOS
    after each document (unless its last piece already ends with one), cut into rows
    of ``length`` tokens (the incomplete tail is dropped)."""

    def __init__(
        self,
        tables: dict[int, ShardTable],
        train: dict[int, np.ndarray],
        length: int,
        eos_id: int | None,
        seed: int,
    ):
        self.length = length
        lens = sorted(tables)
        self._tables = [tables[n] for n in lens]
        tid = np.concatenate([np.full(len(train[n]), t, np.int64) for t, n in enumerate(lens)])
        rows = np.concatenate([train[n] for n in lens])
        keys = np.concatenate([tables[n].doc_key[train[n]] for n in lens])
        offsets = np.concatenate([tables[n].offset[train[n]] for n in lens])
        lengths = np.concatenate([np.full(len(train[n]), n, np.int64) for n in lens])
        # a document repeated by source mixing has its pieces several times: copy c is
        # the c-th occurrence of each (doc, offset), and every copy is its own document
        by_piece = np.lexsort((offsets, keys))
        k, o = keys[by_piece], offsets[by_piece]
        run = np.r_[True, (k[1:] != k[:-1]) | (o[1:] != o[:-1])] if len(k) else k.astype(bool)
        idx = np.arange(len(k))
        copy = np.empty(len(k), np.int64)
        copy[by_piece] = idx - np.maximum.accumulate(np.where(run, idx, 0))
        units = np.stack([keys, copy.astype(np.uint64)], axis=1)
        uniq, inverse = np.unique(units, axis=0, return_inverse=True)
        rank = np.random.default_rng(seed).permutation(len(uniq))[inverse.ravel()]
        order = np.lexsort((offsets, rank))
        tid, rows, rank, lengths = tid[order], rows[order], rank[order], lengths[order]
        last = np.r_[rank[1:] != rank[:-1], True] if len(rank) else np.zeros(0, bool)
        add_eos = np.zeros(len(rank), bool)
        if eos_id is not None:
            for t, table in enumerate(self._tables):
                sel = np.flatnonzero(last & (tid == t))
                if len(sel):
                    add_eos[sel] = table.tokens(rows[sel])[:, -1] != eos_id
        # segments: a piece (table, row, length) or an EOS (table -1)
        n_seg = len(tid) + int(add_eos.sum())
        pos = np.arange(len(tid)) + np.r_[0, np.cumsum(add_eos)[:-1]] if len(tid) else tid
        self.seg_table = np.full(n_seg, -1, np.int64)
        self.seg_row = np.zeros(n_seg, np.int64)
        self.seg_len = np.ones(n_seg, np.int64)
        self.seg_table[pos], self.seg_row[pos], self.seg_len[pos] = tid, rows, lengths
        self.eos_id = eos_id
        self.starts = np.r_[0, np.cumsum(self.seg_len)]
        self.num_rows = int(self.starts[-1] // length)
        self.num_tokens = self.num_rows * length
        self.dtype = next((t.chunks[0].dtype for t in self._tables if t.chunks), np.uint16)

    def get(self, idx: np.ndarray) -> np.ndarray:
        out = np.empty((len(idx), self.length), dtype=self.dtype)
        for i, c in enumerate(np.asarray(idx, np.int64)):
            begin, end = c * self.length, (c + 1) * self.length
            s = int(np.searchsorted(self.starts, begin, side="right") - 1)
            filled = 0
            while filled < self.length:
                lo = max(begin, self.starts[s]) - self.starts[s]
                hi = min(end, self.starts[s + 1]) - self.starts[s]
                if self.seg_table[s] < 0:
                    piece = np.array([self.eos_id])
                else:
                    table = self._tables[self.seg_table[s]]
                    piece = table.tokens([self.seg_row[s]])[0, lo:hi]
                out[i, filled : filled + hi - lo] = piece
                filled += hi - lo
                s += 1
        return out


# --------------------------------------------------------------------------- dataset


@dataclass
class Document:
    """A held-out document rebuilt from its pieces; ``spans`` are its contiguous runs
    of tokens (several when the decomposer dropped tokens in between)."""

    key: int
    source: str
    spans: list[np.ndarray]
    group: str = "<none>"


class BucketDataset:
    """A bucket directory, split into training rows and held-out documents."""

    def __init__(
        self,
        root: str | Path,
        val_fraction: float = 0.01,
        min_val_docs_per_source: int = 1,
        min_len: int | None = None,
        max_len: int | None = None,
    ):
        self.root = Path(root)
        manifest_path = self.root / "manifest.json"
        if not manifest_path.is_file():
            raise InputError(f"{manifest_path}: bucket manifest not found")
        try:
            self.manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InputError(f"{manifest_path}: invalid JSON ({exc})") from None
        self.token_dtype = str(self.manifest.get("token_dtype", "uint16"))
        self.vocab_size = self.manifest.get("vocab_size")
        self.eos_id = self.manifest.get("eos_id")
        self.sources: list[str] = []
        self.groups: list[str] = []
        self.tables: dict[int, ShardTable] = {}
        for folder in sorted(self.root.glob("len_*")):
            m = _LEN_DIR.match(folder.name)
            if not m or not _shards(folder):
                continue
            n = int(m.group(1))
            if (min_len and n < min_len) or (max_len and n > max_len):
                continue
            self.tables[n] = ShardTable(_shards(folder), n, self.sources, self.groups)
        if not self.tables:
            raise InputError(f"{self.root}: no len_<N>/shard_*.arrow bucket shards found")
        if self.vocab_size is None:
            self.vocab_size = 1 + max(int(c.max()) for t in self.tables.values() for c in t.chunks)
            if self.eos_id is not None:
                self.vocab_size = max(self.vocab_size, int(self.eos_id) + 1)
        self.val_keys = self._held_out_keys(val_fraction, min_val_docs_per_source)
        self.train_rows: dict[int, np.ndarray] = {}
        self.val_copy_rows: dict[int, int] = {}  # training rows dropped as held-out copies
        for n, t in self.tables.items():
            val = np.isin(t.doc_key, self.val_keys)
            train = np.flatnonzero(~val)
            if val.any() and len(train):
                hashes = t.row_hashes()
                copy = np.isin(hashes[train], hashes[val])
                self.val_copy_rows[n] = int(copy.sum())
                train = train[~copy]
            self.train_rows[n] = train

    def _held_out_keys(self, fraction: float, min_per_source: int) -> np.ndarray:
        keys = np.concatenate([t.doc_key for t in self.tables.values()])
        srcs = np.concatenate([t.source for t in self.tables.values()])
        keys, first = np.unique(keys, return_index=True)
        srcs = srcs[first]
        val = held_out(keys, fraction)
        for code in np.unique(srcs):
            mine = np.flatnonzero(srcs == code)  # sorted by key
            need = min(min_per_source, len(mine) - 1) - int(val[mine].sum())
            if need > 0:
                val[mine[~val[mine]][:need]] = True
        return keys[val]

    @property
    def lengths(self) -> list[int]:
        return sorted(self.tables)

    def bucket_sources(self) -> dict[int, TableRows]:
        """Training rows of each bucket (buckets left empty by the split are omitted)."""
        out = {n: TableRows(self.tables[n], self.train_rows[n]) for n in self.lengths}
        return {n: s for n, s in out.items() if s.num_rows}

    def concat_source(self, length: int, seed: int, from_shards: bool = False):
        """The concat-and-chunk baseline at ``length``. By default it is rebuilt from the
        same training pieces as bucket mode (identical tokens, no held-out leakage);
        ``from_shards`` reads ``concat/len_<length>/`` instead, dropping rows whose
        ``doc_id`` is held out (a row's later documents may still be held-out ones)."""
        if not from_shards:
            return ConcatStream(self.tables, self.train_rows, length, self.eos_id, seed)
        folder = self.root / "concat" / f"len_{length}"
        if not _shards(folder):
            raise InputError(f"{folder}: no concat shards at length {length}")
        table = ShardTable(_shards(folder), length, self.sources, self.groups)
        return TableRows(table, np.flatnonzero(~np.isin(table.doc_key, self.val_keys)))

    def val_documents(
        self, max_docs_per_source: int | None = None, by: str = "source"
    ) -> list[Document]:
        """Held-out documents rebuilt from their pieces, lowest doc hash first per source
        (per group with ``by="group"``: the cap then applies to each group)."""
        parts = []
        for n, t in self.tables.items():
            rows = np.flatnonzero(np.isin(t.doc_key, self.val_keys))
            cap = t.group if by == "group" else t.source
            parts += [
                (int(t.doc_key[r]), int(t.offset[r]), n, int(r), int(cap[r]), int(t.source[r]),
                 int(t.group[r]))
                for r in rows
            ]  # fmt: skip
        parts.sort()
        docs: list[Document] = []
        per_source: dict[int, int] = {}
        i = 0
        while i < len(parts):
            j = i
            while j < len(parts) and parts[j][0] == parts[i][0]:
                j += 1
            code = parts[i][4]
            if max_docs_per_source is None or per_source.get(code, 0) < max_docs_per_source:
                per_source[code] = per_source.get(code, 0) + 1
                spans, end = [], None
                for _, offset, n, row, *_ in parts[i:j]:
                    toks = self.tables[n].tokens([row])[0]
                    if end is not None and offset == end:
                        spans[-1] = np.concatenate([spans[-1], toks])
                    elif end is None or offset > end:
                        spans.append(toks)
                    else:  # overlapping piece: keep only its new tokens
                        spans[-1] = np.concatenate([spans[-1], toks[end - offset :]])
                    end = max(end or 0, offset + n)
                source, group = self.sources[parts[i][5]], self.groups[parts[i][6]]
                docs.append(Document(parts[i][0], source, spans, group))
            i = j
        return docs

    def fingerprint(self) -> str:
        return fingerprint(self.root)


def fingerprint(root: str | Path) -> str:
    """xxh3-128 over a bucket directory's manifest.json and every shard's bytes, in
    path order (a few GB/s, so cheap next to training)."""
    root = Path(root)
    h = xxhash.xxh3_128()
    files = [root / "manifest.json"] + sorted(root.rglob("shard_*.arrow"))
    for path in files:
        h.update(str(path.relative_to(root)).encode())
        with open(path, "rb") as f:
            while chunk := f.read(1 << 24):
                h.update(chunk)
    return h.hexdigest()
