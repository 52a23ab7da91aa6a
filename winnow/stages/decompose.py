"""Dataset decomposition (Pouransari et al., 2024): write length buckets of tokens.

Each tokenized document (``tokens`` from the tokenize stage, EOS included) is cut
greedily into power-of-two pieces (see ``winnow.kernels.decompose``); a piece of
``2**k`` tokens goes to bucket ``len_<2**k>``, so every sequence comes from one
document. The same tokens are also written as the concat-and-chunk baseline:
documents joined in id order, cut every ``concat_len`` tokens, last partial chunk
dropped.

Layout under ``RUN/<dir>`` (default ``buckets``; written to ``<dir>.partial`` and
renamed when complete)::

    len_<N>/shard_00000.arrow          tokens fixed_size_list<uint16|uint32>[N],
                                       doc_id string, source string, offset int64
    concat/len_<L>/shard_00000.arrow   same columns; doc_id/offset of the chunk's first token
    manifest.json                      counts, shard paths, dtype, tokenizer, mix

With ``group_column`` (e.g. ``skill_group`` from the ``skills`` stage, or a cluster
id), every shard also has a ``group`` string column: that column of the piece's
document, cast to string, a null named ``"null"``; the trainer's ``data.mixture``
can draw rows by it (``group: group``) instead of by ``source``.

Tokens are ``uint16`` when the vocabulary (or, if unknown, every id) fits, else
``uint32``. A shard holds ``max(1, shard_tokens // N)`` sequences (the last fewer).
Order is deterministic: documents sorted by ``id`` (ties by a hash of their tokens),
so shards are byte-identical whatever the input sharding or order.

Mixing (``mix``) turns a per-source weight into a per-document copy count
``floor(f) + [u < frac(f)]``, ``u`` uniform from a hash of (seed, doc id).
``mix_mode: repeat``: the weight is the factor ``f`` (2: twice, 0.5: half the
documents; unnamed sources keep 1). ``mix_mode: share``: weights are target token
shares at the same total (``{real: 1, synthetic: 1}``: half each), so
``f = share * total_tokens / source_tokens``; every source must be named. Copy ``c``
of the corpus is written after all copies ``< c``. A null source is named ``"null"``.

Kept rows: the documents sorted by id, without ``tokens``, plus ``n_sequences``
(bucket sequences written for the document, all copies) and ``dropped_tokens``
(copies times its ``n mod 2**min_log2`` tail). Ledger, checked before the rename:
bucket tokens + dropped tokens = sum of copies * n_tokens.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash
from pydantic import Field, model_validator

from winnow.errors import InputError, LedgerError, WinnowError
from winnow.hashing import to_unit
from winnow.io.buckets import BucketWriter, ConcatWriter, TokenShardWriter, concat_as
from winnow.kernels.decompose import greedy_plan, plan_document
from winnow.stages.base import GlobalStage, Materialized, Output, Params
from winnow.stages.tokenize import META_EOS, META_SHA256, META_TOKENIZER, META_VOCAB, TOKENS
from winnow.table import ID

SOURCE = "source"
NULL_SOURCE = "null"
FORMAT = "winnow-buckets/1"
CHUNK_TOKENS = 1 << 22  # tokens gathered per processing chunk
CHUNK_DOCS = 1 << 15  # documents per kept-output chunk
_U64 = (1 << 64) - 1


class DecomposeParams(Params):
    dir: str = "buckets"
    """Output folder under the run directory."""
    min_log2: int = Field(default=8, ge=0, le=30)
    """The shortest bucket is ``2**min_log2`` tokens; shorter tails are dropped."""
    max_log2: int = Field(default=13, ge=0, le=30)
    """The longest bucket is ``2**max_log2`` tokens."""
    shard_tokens: int = Field(default=1 << 24, gt=0)
    """Tokens per shard file."""
    randomize_long: bool = False
    """While more than ``2**(max_log2+1)`` tokens of a document remain, draw the piece
    size at random, biased to short pieces (seeded by the stage seed and the doc id)."""
    concat: bool = True
    """Also write the concat-and-chunk baseline."""
    concat_len: int | None = Field(default=None, gt=0)
    """Baseline chunk length in tokens; null: ``2**max_log2``."""
    mix: dict[str, float] | None = None
    """Source -> weight (see ``mix_mode``); null: every document once."""
    mix_mode: Literal["repeat", "share"] = "repeat"
    """``repeat``: a weight is a copy factor (unnamed sources keep 1); ``share``: weights
    are target token shares at the same total (every source must be named)."""
    tokenizer_sha256: str | None = None
    """Tokenizer hash for the manifest; null: from the ``tokens`` column's metadata."""
    vocab_size: int | None = Field(default=None, gt=0)
    """Vocabulary size (picks uint16 or uint32 tokens); null: from the tokens metadata."""
    eos_id: int | None = Field(default=None, ge=0)
    """EOS token id for the manifest; null: from the tokens metadata."""
    group_column: str | None = None
    """A column carried into every shard as ``group`` (string, null as ``"null"``), for
    trainer mixtures over skills or clusters, e.g. ``skill_group``; null: no group column."""

    @model_validator(mode="after")
    def _check(self) -> DecomposeParams:
        if self.min_log2 > self.max_log2:
            raise ValueError("min_log2 must be <= max_log2")
        if self.mix is not None and any(w < 0 or not math.isfinite(w) for w in self.mix.values()):
            raise ValueError("mix weights must be finite and >= 0")
        return self


class Decompose(GlobalStage):
    """Write length buckets and the concat baseline from the ``tokens`` column."""

    name = "decompose"
    spark_backend = "winnow.spark.backends.decompose:run"

    def side_outputs(self) -> list[Path]:
        return [Path(self.run_dir) / self.params.dir] if self.run_dir is not None else []

    Params = DecomposeParams

    def run(self, data: Materialized, workdir: Path) -> Iterator[Output]:
        p = self.params
        if self.run_dir is None:
            raise WinnowError("decompose writes buckets into the run directory; none was given")
        corpus = Corpus(data, p.group_column)
        meta = self.token_meta(data.schema)
        dtype = token_dtype(meta["vocab_size"], corpus.max_token)
        copies, mix_info = self.copies(corpus)
        final = Path(self.run_dir) / p.dir
        partial = final.with_name(final.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        infos: dict = {}
        for chunk, n_seq, dropped in self.sequences(corpus, copies, dtype, partial, infos):
            yield self._output(corpus, chunk, n_seq, dropped)
        if corpus.num_docs == 0:
            yield self._output(corpus, np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
        manifest = self.manifest(meta, dtype, corpus.lengths, copies, mix_info, **infos)
        self.publish(partial, manifest)

    def sequences(self, corpus, copies, dtype, root: Path, infos: dict, writer=None):
        """Write the bucket and concat shards under ``root``, in processing chunks of the
        id-ordered corpus; yield ``(chunk, n_sequences, dropped_tokens)`` per kept-output
        chunk; then set ``infos`` (``buckets_info``, ``concat_info``) for the manifest.
        ``writer``: the shard writer class (``TokenShardWriter``)."""
        p = self.params
        writer = writer or TokenShardWriter
        buckets = BucketWriter(root, p.min_log2, p.max_log2, dtype, p.shard_tokens, corpus, writer)
        concat_len = p.concat_len or 1 << p.max_log2
        concat_writer = writer(
            root,
            f"concat/len_{concat_len}",
            concat_len,
            dtype,
            p.shard_tokens,
            p.group_column is not None,
        )
        concat = ConcatWriter(concat_writer, corpus, copies)
        tail = (1 << p.min_log2) - 1
        # copy c of the corpus (documents with more than c copies) after copies < c
        for c in range(max(1, int(copies.max(initial=0)))):
            for chunk in corpus.chunks(np.nonzero(copies > c)[0] if c else None):
                live = chunk[copies[chunk] > c]
                flat, lengths = corpus.tokens(live)
                doc, start, log2 = self.pieces(corpus, live, lengths)
                buckets.add(live, flat, lengths, doc, start, log2)
                if p.concat:
                    concat.add(flat)
                if c == 0:
                    pieces = np.bincount(np.searchsorted(chunk, live)[doc], minlength=len(chunk))
                    n_seq = copies[chunk] * pieces
                    dropped = copies[chunk] * (corpus.lengths[chunk] & tail)
                    yield chunk, n_seq, dropped
        infos["buckets_info"] = buckets.close()
        infos["concat_info"] = concat.close() if p.concat else None

    def manifest(
        self, meta: dict, dtype, lengths, copies, mix_info, buckets_info, concat_info
    ) -> dict:
        """manifest.json's content; ``mix_info`` from ``_copies`` (None without ``mix``)."""
        p = self.params
        tail = (1 << p.min_log2) - 1
        return {
            "format": FORMAT,
            "token_dtype": np.dtype(dtype).name,
            **meta,
            "min_log2": p.min_log2,
            "max_log2": p.max_log2,
            "randomize_long": p.randomize_long,
            "seed": self.seed,
            "shard_tokens": p.shard_tokens,
            "documents": len(lengths),
            "input_tokens": int(lengths.sum()),
            "mixed_tokens": int((copies * lengths).sum()),
            "dropped_tokens": int((copies * (lengths & tail)).sum()),
            **buckets_info,
            "concat": concat_info,
            "mix": mix_info,
            **({"group_column": p.group_column} if p.group_column else {}),
        }

    def publish(self, partial: Path, manifest: dict) -> None:
        """Check the token ledger, write manifest.json, rename ``partial`` into place."""
        final = partial.with_name(partial.name.removesuffix(".partial"))
        bucket_tokens = sum(b["tokens"] for b in manifest["buckets"].values())
        if bucket_tokens + manifest["dropped_tokens"] != manifest["mixed_tokens"]:
            raise LedgerError(
                f"decompose: bucket tokens {bucket_tokens} + dropped {manifest['dropped_tokens']}"
                f" != corpus tokens {manifest['mixed_tokens']}"
            )
        partial.mkdir(parents=True, exist_ok=True)
        (partial / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        shutil.rmtree(final, ignore_errors=True)
        partial.rename(final)

    def pieces(self, corpus: Corpus, positions: np.ndarray, lengths: np.ndarray):
        """Pieces ``(doc, start, log2)`` of the documents, greedy or randomised when long;
        a long document's random pieces depend only on the seed and its id."""
        lo, hi = self.params.min_log2, self.params.max_log2
        long = lengths >= 1 << (hi + 1) if self.params.randomize_long else np.zeros(0, bool)
        if not long.any():
            return greedy_plan(lengths, lo, hi)
        doc, start, log2 = greedy_plan(np.where(long, 0, lengths), lo, hi)
        extra = [doc], [start], [log2]
        for i in np.nonzero(long)[0]:
            key = xxhash.xxh64_intdigest(b"split\0" + corpus.ids[positions[i]].as_py().encode())
            rng = np.random.default_rng([self.seed & _U64, key])
            pieces = np.array(plan_document(int(lengths[i]), lo, hi, rng), np.int64)
            extra[0].append(np.full(len(pieces), i))
            extra[1].append(pieces[:, 0])
            extra[2].append(pieces[:, 1].astype(np.int8))
        doc, start, log2 = (np.concatenate(parts) for parts in extra)
        order = np.lexsort((start, doc))
        return doc[order], start[order], log2[order]

    def copies(self, corpus: Corpus) -> tuple[np.ndarray, dict | None]:
        """Copies of each document under ``mix`` (all ones without it)."""
        p = self.params
        if p.mix is None:
            return np.ones(corpus.num_docs, np.int64), None
        names = corpus.source_names
        tokens = np.bincount(corpus.source_codes, corpus.lengths, len(names)).astype(np.int64)
        present = {n for n, t in zip(names, tokens, strict=True) if t > 0}
        if p.mix_mode == "repeat":
            factor = np.array([p.mix.get(n, 1.0) for n in names])
        else:
            if set(p.mix) != present:
                raise InputError(
                    f"decompose mix (share): weights name {sorted(p.mix)}, "
                    f"corpus sources are {sorted(present)}; name each source once"
                )
            weight_sum = sum(p.mix.values())
            if weight_sum <= 0:
                raise InputError("decompose mix (share): weights sum to 0")
            total = tokens.sum()
            factor = np.array(
                [
                    p.mix[n] / weight_sum * total / t if t else 0.0
                    for n, t in zip(names, tokens, strict=True)
                ]
            )
        f = factor[corpus.source_codes]
        copies = np.floor(f).astype(np.int64)
        (frac,) = np.nonzero(f > copies)
        ids = corpus.ids.take(frac).to_pylist()
        u = np.array(
            [xxhash.xxh64_intdigest(b"mix\0" + i.encode(), seed=self.seed & _U64) for i in ids],
            np.uint64,
        )
        copies[frac] += (to_unit(u) < f[frac] - copies[frac]).astype(np.int64)
        info = {
            "mode": p.mix_mode,
            "weights": dict(sorted(p.mix.items())),
            "factors": {n: float(x) for n, x in sorted(zip(names, factor, strict=True))},
            "input_source_tokens": {n: int(t) for n, t in sorted(zip(names, tokens, strict=True))},
            "document_copies": int(copies.sum()),
        }
        return copies, info

    def token_meta(self, schema: pa.Schema) -> dict:
        """Tokenizer facts for the manifest: params first, then the tokens field metadata."""
        p = self.params
        field_meta = (schema.field(TOKENS).metadata if TOKENS in schema.names else None) or {}

        def get(key: bytes, cast=str):
            value = field_meta.get(key, b"").decode()
            return cast(value) if value else None

        return {
            "vocab_size": p.vocab_size or get(META_VOCAB, int),
            "eos_id": p.eos_id if p.eos_id is not None else get(META_EOS, int),
            "tokenizer": get(META_TOKENIZER),
            "tokenizer_sha256": p.tokenizer_sha256 or get(META_SHA256),
        }

    def _output(self, corpus: Corpus, chunk: np.ndarray, n_seq, dropped) -> Output:
        kept = corpus.rows(chunk)
        kept = kept.append_column("n_sequences", pa.array(n_seq, pa.int64()))
        kept = kept.append_column("dropped_tokens", pa.array(dropped, pa.int64()))
        stats = {
            "sequences": float(np.sum(n_seq)),
            "dropped_tokens": float(np.sum(dropped)),
        }
        return Output(kept=kept, stats=stats)


def token_dtype(vocab_size: int | None, max_token: int) -> type[np.unsignedinteger]:
    """uint16 when the vocabulary (or, unknown, every id) fits; checks the data agrees."""
    fits16 = vocab_size <= 1 << 16 if vocab_size else max_token < 1 << 16
    dtype = np.uint16 if fits16 else np.uint32
    if max_token > np.iinfo(dtype).max:
        raise InputError(f"token id {max_token} does not fit {np.dtype(dtype).name}")
    return dtype


def check_columns(schema: pa.Schema, group_column: str | None) -> None:
    """One-line errors for an input decompose cannot read."""
    for column in (ID, TOKENS):
        if column not in schema.names:
            raise InputError(f"decompose needs a {column!r} column (run tokenize first)")
    if group_column is not None and group_column not in schema.names:
        raise InputError(
            f"decompose group_column: no column {group_column!r} in the input "
            f"(columns: {', '.join(schema.names)})"
        )


class Corpus:
    """All documents of a materialised input, indexed in id order (memory-mapped)."""

    def __init__(self, data: Materialized, group_column: str | None = None):
        check_columns(data.schema, group_column)
        self.batches = [b for table in data.tables() for b in table.to_batches()]
        self.schema = data.schema
        self._views = [token_view(b.column(TOKENS)) for b in self.batches]
        lengths = np.concatenate([np.diff(off) for off, _ in self._views] or [np.zeros(0)])
        self.max_token = max(
            (int(v[o[0] : o[-1]].max()) for o, v in self._views if o[-1] > o[0]), default=0
        )
        ids = concat_as([b.column(ID) for b in self.batches], pa.large_string())
        batch_of = np.repeat(np.arange(len(self.batches)), [b.num_rows for b in self.batches])
        row_of = np.concatenate([np.arange(b.num_rows) for b in self.batches] or [np.zeros(0)])
        order = self._order(ids, batch_of, row_of)
        self.num_docs = len(order)
        self.ids = ids.take(order)
        self.lengths = lengths[order].astype(np.int64)
        self.batch_of, self.row_of = batch_of[order], row_of[order].astype(np.int64)
        if SOURCE in data.schema.names:
            sources = concat_as([b.column(SOURCE) for b in self.batches], pa.string()).take(order)
        else:
            sources = pa.nulls(self.num_docs, pa.string())
        self.sources = sources
        codes = pc.dictionary_encode(pc.fill_null(sources, NULL_SOURCE))
        self.source_names = codes.dictionary.to_pylist()
        self.source_codes = codes.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        self.groups = None  # the group column in id order, nulls as "null"
        if group_column is not None:
            values = concat_as([b.column(group_column) for b in self.batches], pa.string())
            self.groups = pc.fill_null(values.take(order), NULL_SOURCE)

    def _order(self, ids, batch_of, row_of) -> np.ndarray:
        def tie(i: int) -> int:
            return _token_hash(self._views[batch_of[i]], row_of[i])

        return id_order(ids, tie)

    def chunks(self, positions: np.ndarray | None) -> Iterator[np.ndarray]:
        """Sorted positions in runs of about ``CHUNK_TOKENS`` tokens (all when None)."""
        if positions is None:
            positions = np.arange(self.num_docs)
        return doc_chunks(self.lengths, positions)

    def tokens(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The documents' tokens joined end to end, and their lengths."""
        parts = []
        for b, r in zip(self.batch_of[positions], self.row_of[positions], strict=True):
            off, values = self._views[b]
            parts.append(values[off[r] : off[r + 1]])
        flat = np.concatenate(parts) if parts else np.zeros(0, np.uint32)
        return flat, self.lengths[positions]

    def rows(self, positions: np.ndarray) -> pa.Table:
        """The documents' rows without ``tokens``, in the order of ``positions``."""
        if not len(positions):
            return self.schema.remove(self.schema.get_field_index(TOKENS)).empty_table()
        group = np.argsort(self.batch_of[positions], kind="stable")
        batches, rows = self.batch_of[positions][group], self.row_of[positions][group]
        uniq, first = np.unique(batches, return_index=True)
        parts = [
            pa.Table.from_batches([self.batches[b].drop_columns([TOKENS]).take(r)])
            for b, r in zip(uniq, np.split(rows, first[1:]), strict=True)
        ]
        table = pa.concat_tables(parts)
        return table.take(np.argsort(group, kind="stable"))


def id_order(ids: pa.Array, tie) -> np.ndarray:
    """Positions sorted by id; duplicate ids are ordered by ``tie(position)``, a hash of
    their tokens (then by position)."""
    order = pc.sort_indices(ids).to_numpy()
    sorted_ids = ids.take(order)
    same = pc.equal(sorted_ids[1:], sorted_ids[:-1]).to_numpy(zero_copy_only=False)
    if not same.any():
        return order
    dup = np.zeros(len(order), bool)
    dup[1:] |= same
    dup[:-1] |= same
    ties = np.zeros(len(order), np.uint64)
    for i in order[dup]:
        ties[i] = tie(i)
    keys = pa.table({"id": ids, "tie": ties})
    return pc.sort_indices(keys, [("id", "ascending"), ("tie", "ascending")]).to_numpy()


def doc_chunks(lengths: np.ndarray, positions: np.ndarray) -> Iterator[np.ndarray]:
    """``positions`` (documents of ``lengths``) in runs of about ``CHUNK_TOKENS`` tokens
    and at most ``CHUNK_DOCS`` documents: the kept-output parts."""
    ends = np.cumsum(lengths[positions])
    start = 0
    while start < len(positions):
        before = ends[start] - lengths[positions[start]]
        stop = int(np.searchsorted(ends, before + CHUNK_TOKENS))
        stop = min(max(stop, start + 1), start + CHUNK_DOCS)
        yield positions[start:stop]
        start = stop


def _token_hash(view: tuple[np.ndarray, np.ndarray], row: int) -> int:
    """xxh64 of one document's token ids (their stored dtype): the duplicate-id tie."""
    off, values = view
    return xxhash.xxh64_intdigest(values[off[row] : off[row + 1]].tobytes())


def token_view(tokens: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, values) numpy views of a list array; values index by the offsets."""
    if not (pa.types.is_list(tokens.type) or pa.types.is_large_list(tokens.type)):
        raise InputError(f"decompose: 'tokens' must be a list of integers, not {tokens.type}")
    offsets = tokens.offsets.to_numpy().astype(np.int64)
    values = tokens.values.to_numpy(zero_copy_only=False)
    used = values[offsets[0] : offsets[-1]]
    if values.dtype.kind not in "ui":
        raise InputError(f"decompose: token ids must be integers, not {tokens.type}")
    if values.dtype.kind == "i" and len(used) and used.min() < 0:
        raise InputError("decompose: negative token ids")
    return offsets, values
