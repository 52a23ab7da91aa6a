"""Writers of length-bucket token shards (the ``decompose`` stage's output files).

``TokenShardWriter`` appends fixed-length sequences to
``<root>/<name>/shard_<5 digits>.arrow`` (``tokens fixed_size_list<uint16|uint32>[N]``,
``doc_id``, ``source``, ``offset``, and ``group`` when the corpus carries a group
column); ``BucketWriter`` keeps one per power-of-two
bucket; ``ConcatWriter`` writes the concat-and-chunk baseline from the same tokens.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from winnow.errors import LedgerError
from winnow.kernels.decompose import chunk_owners, gather


def concat_as(arrays: list[pa.Array], type_: pa.DataType) -> pa.Array:
    return pa.concat_arrays([a.cast(type_) for a in arrays]) if arrays else pa.array([], type_)


def copy_stream(copies: np.ndarray) -> np.ndarray:
    """Document positions in writing order: copy ``c`` of the corpus (the documents with
    more than ``c`` copies, in id order) after all copies ``< c``."""
    return np.concatenate(
        [np.nonzero(copies > c)[0] for c in range(int(copies.max(initial=0)))]
        or [np.zeros(0, np.int64)]
    )


class TokenShardWriter:
    """Appends fixed-length sequences to ``<root>/<name>/shard_<5 digits>.arrow``."""

    def __init__(
        self, root: Path, name: str, seq_len: int, dtype, shard_tokens: int, group: bool = False
    ):
        """``group``: also write a ``group`` string column (``add``'s ``groups``)."""
        self.root, self.name, self.seq_len, self.dtype = root, name, seq_len, dtype
        self.per_shard = max(1, shard_tokens // seq_len)
        fields = [
            ("tokens", pa.list_(pa.from_numpy_dtype(dtype), seq_len)),
            ("doc_id", pa.string()),
            ("source", pa.string()),
            ("offset", pa.int64()),
        ]
        self.schema = pa.schema(fields + [("group", pa.string())] if group else fields)
        self.pending: list[tuple] = []
        self.shards: list[str] = []
        self.sequences = 0

    def add(
        self, tokens: np.ndarray, doc_ids: pa.Array, sources: pa.Array, offsets, groups=None
    ) -> None:
        if len(tokens):
            offsets = np.asarray(offsets, np.int64)
            self.pending.append((tokens, doc_ids, sources, offsets, groups))
        if sum(len(part[0]) for part in self.pending) >= self.per_shard:
            self._flush(final=False)

    def close(self) -> None:
        self._flush(final=True)

    def summary(self) -> dict:
        return {
            "sequences": self.sequences,
            "tokens": self.sequences * self.seq_len,
            "shards": self.shards,
        }

    def _flush(self, final: bool) -> None:
        if not self.pending:
            return
        tokens = np.concatenate([part[0] for part in self.pending])
        doc_ids = concat_as([part[1] for part in self.pending], pa.string())
        sources = concat_as([part[2] for part in self.pending], pa.string())
        offsets = np.concatenate([part[3] for part in self.pending])
        groups = (
            concat_as([part[4] for part in self.pending], pa.string())
            if "group" in self.schema.names
            else None
        )
        n = len(tokens)
        cut = n if final else n - n % self.per_shard
        for i in range(0, cut, self.per_shard):
            j = min(i + self.per_shard, cut)
            extra = () if groups is None else (groups[i:j],)
            self._write(tokens[i:j], doc_ids[i:j], sources[i:j], offsets[i:j], *extra)
        rest = None if groups is None else groups[cut:]
        self.pending = (
            [(tokens[cut:], doc_ids[cut:], sources[cut:], offsets[cut:], rest)] if cut < n else []
        )

    def _write(self, tokens, doc_ids, sources, offsets, groups=None) -> None:
        rel = self.write_shard(len(self.shards), tokens, doc_ids, sources, offsets, groups)
        self.shards.append(rel)
        self.sequences += len(offsets)

    def write_shard(self, index: int, tokens, doc_ids, sources, offsets, groups=None) -> str:
        """Write shard ``index`` (sequences ``tokens``, n x seq_len); its relative path."""
        values = pa.array(tokens.astype(self.dtype, copy=False).reshape(-1))
        columns = [pa.FixedSizeListArray.from_arrays(values, self.seq_len), doc_ids, sources]
        columns += [offsets] + ([] if groups is None else [groups])
        table = pa.table(columns, schema=self.schema)
        rel = self.shard_path(index)
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, self.schema) as writer:
            writer.write_table(table)
        return rel

    def shard_path(self, index: int) -> str:
        return f"{self.name}/shard_{index:05d}.arrow"


class BucketWriter:
    """One shard writer per bucket ``2**lo .. 2**hi``, and bucket tokens per source."""

    def __init__(self, root: Path, lo: int, hi: int, dtype, shard_tokens: int, corpus, writer):
        self.corpus = corpus
        group = corpus.groups is not None
        self.writers = {
            k: writer(root, f"len_{1 << k}", 1 << k, dtype, shard_tokens, group)
            for k in range(lo, hi + 1)
        }
        self.source_tokens = np.zeros(len(corpus.source_names), np.int64)

    def add(self, positions, flat, lengths, doc, start, log2) -> None:
        """Write the planned pieces of the documents at ``positions`` (tokens ``flat``)."""
        doc_starts = np.cumsum(lengths) - lengths
        for k, writer in self.writers.items():
            sel = log2 == k
            where = positions[doc[sel]]
            writer.add(
                gather(flat, doc_starts[doc[sel]] + start[sel], 1 << k),
                self.corpus.ids.take(where),
                self.corpus.sources.take(where),
                start[sel],
                None if self.corpus.groups is None else self.corpus.groups.take(where),
            )
            codes = self.corpus.source_codes[where]
            self.source_tokens += np.bincount(codes, minlength=len(self.source_tokens)) << k

    def close(self) -> dict:
        for writer in self.writers.values():
            writer.close()
        names = self.corpus.source_names
        return {
            "buckets": {str(w.seq_len): w.summary() for w in self.writers.values()},
            "source_tokens": dict(sorted(zip(names, self.source_tokens.tolist(), strict=True))),
        }


class ConcatWriter:
    """The concat-and-chunk baseline: copy passes of the corpus joined, cut every L tokens."""

    def __init__(self, writer: TokenShardWriter, corpus, copies: np.ndarray):
        self.writer, self.corpus = writer, corpus
        stream = copy_stream(copies)
        owner, self.offsets = chunk_owners(corpus.lengths[stream], writer.seq_len)
        self.owners = stream[owner]
        self.carry = np.zeros(0, np.uint32)
        self.done = 0
        self.total = int(corpus.lengths[stream].sum())

    def add(self, flat: np.ndarray) -> None:
        buf = np.concatenate([self.carry, flat]) if len(self.carry) else flat
        n = len(buf) // self.writer.seq_len
        if n:
            where = self.owners[self.done : self.done + n]
            self.writer.add(
                buf[: n * self.writer.seq_len].reshape(n, -1),
                self.corpus.ids.take(where),
                self.corpus.sources.take(where),
                self.offsets[self.done : self.done + n],
                None if self.corpus.groups is None else self.corpus.groups.take(where),
            )
        self.carry = buf[n * self.writer.seq_len :].copy()
        self.done += n

    def close(self) -> dict:
        self.writer.close()
        summary = self.writer.summary()
        if summary["tokens"] + len(self.carry) != self.total:
            raise LedgerError("decompose: concat tokens do not reconcile")
        return {"len": self.writer.seq_len, **summary, "dropped_tokens": len(self.carry)}
