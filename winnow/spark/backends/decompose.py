"""The Spark backend of ``decompose``: the local stage's bucket files, concat files,
manifest and kept parts, byte for byte.

1. Each input part is read in one task that returns, per document, its position
   (``_file``/``_row``), id, token count, source, ``group_column`` value (null
   without one), a hash of its tokens (the tie between equal ids) and the part's
   largest token id.
2. On the driver, these facts are ordered as locally (``id_order``), each document's
   copies under ``mix`` come from them (``Decompose._copies``), and the local shard
   writing (``Decompose._sequences``) runs over them with placeholder tokens and a
   writer that keeps, per shard file, the doc_id/source/offset (and group) columns
   it would write (as Arrow IPC bytes: a shard's string buffers carry bytes of the rows after
   it, which this keeps), the manifest's entries and the kept-output chunks. The
   tokens never reach the driver.
3. Each input part is read again in one task that emits its documents' token
   fragments, per copy of the document (``copy_stream``: copy ``c`` of the corpus
   after copies ``< c``): one per bucket piece (``Decompose._plan``, greedy or
   seeded random; a bucket's pieces ranked in writing order, shard = rank //
   per_shard), one per ``concat_len`` chunk the copy's tokens touch; each with its
   shard file, row and order in the row.
4. Fragments are shuffled by shard file and sorted by (row, order); each shard file
   is written in one task by the local writer (``TokenShardWriter.write_shard``).
5. The kept rows (without ``tokens``, plus ``n_sequences`` and ``dropped_tokens``)
   are written one part per kept-output chunk, rows in id order (``write_parts``).
6. The driver writes manifest.json (``Decompose._manifest``) and renames the folder
   into place (``Decompose._publish``).

The driver holds O(documents + sequences) facts (ids, sources, offsets, copies,
pieces); the placeholder pass costs a byte per written token, a processing chunk at
a time.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from winnow.errors import LedgerError, WinnowError
from winnow.io.buckets import TokenShardWriter, copy_stream
from winnow.io.writers import read_table
from winnow.ledger import StageCount
from winnow.runners.layout import write_part
from winnow.spark.frames import FILE, ROW, files_frame, spark_schema, write_parts
from winnow.stages.base import Materialized
from winnow.stages.decompose import (
    NULL_SOURCE,
    SOURCE,
    Corpus,
    check_columns,
    id_order,
    token_dtype,
    token_view,
)
from winnow.stages.tokenize import TOKENS
from winnow.table import ID, conform

_KEY_BITS = 40  # a shard file's key: writer index << 40 | shard index

_FRAGMENT_TOKENS = 1 << 24  # tokens per fragment batch (binary offsets are int32)

_FACTS = (
    "file long, row long, id string, length long, source string, grp string, tie long, max long"
)

_FRAGMENTS = "key long, seq long, frag long, tokens binary"


def _read(data: Materialized, path: str) -> pa.Table:
    """One part conformed to ``data.schema``, as ``Materialized.tables`` reads it."""
    return conform(read_table(Path(path)), data.schema)


def _sources(table: pa.Table) -> pa.Array:
    if SOURCE in table.column_names:
        return table[SOURCE].combine_chunks().cast(pa.string())
    return pa.nulls(table.num_rows, pa.string())


def _doc_facts(data: Materialized, group_column: str | None):
    def facts(batches):
        for batch in batches:
            for index, path in zip(
                batch["file"].to_pylist(), batch["path"].to_pylist(), strict=True
            ):
                table = _read(data, path)
                view = token_view(table[TOKENS].combine_chunks())
                off, values = view
                n = table.num_rows
                used = values[off[0] : off[-1]]
                ties = [
                    xxhash.xxh64_intdigest(values[off[r] : off[r + 1]].tobytes()) for r in range(n)
                ]
                yield pa.record_batch(
                    {
                        "file": pa.array(np.full(n, index, np.int64)),
                        "row": pa.array(np.arange(n, dtype=np.int64)),
                        "id": table[ID].combine_chunks().cast(pa.string()),
                        "length": pa.array(np.diff(off).astype(np.int64)),
                        "source": _sources(table),
                        "grp": (
                            table[group_column].combine_chunks().cast(pa.string())
                            if group_column is not None
                            else pa.nulls(n, pa.string())
                        ),
                        "tie": pa.array(np.array(ties, np.uint64).view(np.int64)),
                        "max": pa.array(np.full(n, int(used.max()) if len(used) else 0, np.int64)),
                    }
                )

    return facts


def _fragments(data: Materialized, plan, dtype):
    """mapInArrow body: each part's fragments ``plan.value[file]`` with their tokens."""

    def fragments(batches):
        for batch in batches:
            for index, path in zip(
                batch["file"].to_pylist(), batch["path"].to_pylist(), strict=True
            ):
                if index not in plan.value:
                    continue
                row, start, length, key, seq, frag = plan.value[index]
                off, values = token_view(_read(data, path)[TOKENS].combine_chunks())
                ends = np.cumsum(length)
                cuts = [0, *np.flatnonzero(np.diff(ends // _FRAGMENT_TOKENS)) + 1, len(row)]
                for a, b in zip(cuts[:-1], cuts[1:], strict=True):
                    n = length[a:b]
                    first = off[row[a:b]] + start[a:b]
                    before = np.cumsum(n) - n
                    idx = np.repeat(first - before, n) + np.arange(int(n.sum()))
                    raw = values[idx].astype(dtype, copy=False).tobytes()
                    offsets = np.concatenate([[0], np.cumsum(n)]) * np.dtype(dtype).itemsize
                    tokens = pa.Array.from_buffers(
                        pa.binary(),
                        b - a,
                        [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(raw)],
                    )
                    yield pa.record_batch(
                        {
                            "key": pa.array(key[a:b]),
                            "seq": pa.array(seq[a:b]),
                            "frag": pa.array(frag[a:b]),
                            "tokens": tokens,
                        }
                    )

    return fragments


def _shard_writer(writers: list[TokenShardWriter], dtype, columns):
    """mapInArrow body over fragments sorted by (key, seq, frag): write each shard file,
    its doc_id/source/offset (group) columns from ``columns.value[key]`` (captured locally)."""

    def write(batches):
        pending: list[pa.RecordBatch] = []

        def flush():
            table = pa.Table.from_batches(pending).combine_chunks()
            pending.clear()
            key = table["key"][0].as_py()
            writer = writers[key >> _KEY_BITS]
            shard = key & ((1 << _KEY_BITS) - 1)
            tokens = table["tokens"].chunk(0)
            offs = np.frombuffer(tokens.buffers()[1], np.int32)[
                tokens.offset : tokens.offset + len(tokens) + 1
            ]
            flat = np.frombuffer(tokens.buffers()[2], np.uint8)[offs[0] : offs[-1]].view(dtype)
            meta = pa.ipc.open_stream(columns.value[key]).read_all()
            n = meta.num_rows
            if len(flat) != n * writer.seq_len:
                raise LedgerError(f"decompose: shard {writer.shard_path(shard)} is incomplete")
            writer.write_shard(
                shard,
                flat.reshape(n, writer.seq_len),
                meta["doc_id"].chunk(0),
                meta["source"].chunk(0),
                meta["offset"].chunk(0),
                meta["group"].chunk(0) if "group" in meta.column_names else None,
            )
            return pa.record_batch({"key": [key], "sequences": [n]})

        for batch in batches:
            keys = batch["key"].to_numpy()
            cuts = np.flatnonzero(np.diff(keys)) + 1
            for a, b in zip([0, *cuts], [*cuts, len(keys)], strict=True):
                piece = batch.slice(a, b - a)
                if pending and pending[0]["key"][0].as_py() != piece["key"][0].as_py():
                    yield flush()
                pending.append(piece)
        if pending:
            yield flush()

    return write


def _ranges(first: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``first[i], first[i] + 1, ..., first[i] + counts[i] - 1`` for each i, joined."""
    before = np.cumsum(counts) - counts
    return np.repeat(first - before, counts) + np.arange(int(counts.sum()))


def _by_file(file_of: np.ndarray, columns: list[np.ndarray]) -> dict[int, tuple]:
    """Split aligned arrays by the input part they come from."""
    order = np.argsort(file_of, kind="stable")
    files, first = np.unique(file_of[order], return_index=True)
    split = [np.split(c[order], first[1:]) for c in columns]
    return {int(f): tuple(s[i] for s in split) for i, f in enumerate(files)}


class _Facts:
    """The ``Corpus`` facts the local shard writing reads, from per-document facts:
    ids, lengths and sources in id order; ``tokens`` are zeros (placeholders)."""

    chunks = Corpus.chunks

    def __init__(self, ids: pa.Array, lengths: np.ndarray, sources: pa.Array, groups=None):
        self.ids, self.lengths, self.sources = ids, lengths, sources
        self.groups = None if groups is None else pc.fill_null(groups, NULL_SOURCE)
        self.num_docs = len(lengths)
        codes = pc.dictionary_encode(pc.fill_null(sources, NULL_SOURCE))
        self.source_names = codes.dictionary.to_pylist()
        self.source_codes = codes.indices.to_numpy(zero_copy_only=False).astype(np.int64)

    def tokens(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lengths = self.lengths[positions]
        return np.zeros(int(lengths.sum()), np.uint8), lengths


def _capturing_writer(captured: dict):
    """A ``TokenShardWriter`` that keeps each shard's doc_id/source/offset (group) columns (as the
    Arrow IPC stream of the arrays it would write, so their bytes survive) and writes
    nothing: the executors write the shards."""

    class Capture(TokenShardWriter):
        def _write(self, tokens, doc_ids, sources, offsets, groups=None) -> None:
            table = pa.table({"doc_id": doc_ids, "source": sources, "offset": offsets})
            if groups is not None:
                table = table.append_column("group", groups)
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema) as stream:
                stream.write_table(table)
            captured[self.name, len(self.shards)] = sink.getvalue().to_pybytes()
            self.shards.append(self.shard_path(len(self.shards)))
            self.sequences += len(offsets)

    return Capture


def run(spark, stage, data: Materialized, pass_dir: Path) -> StageCount:
    """Run ``decompose`` on Spark; see the module doc."""

    p = stage.params
    if stage.run_dir is None:
        raise WinnowError("decompose writes buckets into the run directory; none was given")
    check_columns(data.schema, p.group_column)
    files = files_frame(spark, data)

    # 1. per-document facts, ordered as locally
    facts = files.mapInArrow(_doc_facts(data, p.group_column), _FACTS).toArrow()
    facts = facts.sort_by([("file", "ascending"), ("row", "ascending")])
    ids = facts["id"].combine_chunks().cast(pa.large_string())
    tie = facts["tie"].to_numpy().view(np.uint64)
    order = id_order(ids, lambda i: int(tie[i]))
    file_of = facts["file"].to_numpy()[order]
    row_of = facts["row"].to_numpy()[order]
    lengths = facts["length"].to_numpy()[order].astype(np.int64)
    groups = facts["grp"].combine_chunks().take(order) if p.group_column else None
    corpus = _Facts(ids.take(order), lengths, facts["source"].combine_chunks().take(order), groups)
    meta = stage.token_meta(data.schema)
    dtype = token_dtype(meta["vocab_size"], int(pc.max(facts["max"]).as_py() or 0))
    num_docs = corpus.num_docs
    copies, mix_info = stage.copies(corpus)

    final = Path(stage.run_dir) / p.dir
    partial = final.with_name(final.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)

    # 2. the local shard writing, tokens left out: each shard's other columns, the
    # manifest's entries and the kept-output chunks
    captured: dict[tuple[str, int], bytes] = {}
    infos: dict = {}
    chunks = list(
        stage.sequences(corpus, copies, dtype, partial, infos, _capturing_writer(captured))
    )

    # 3. every fragment's (doc, start, length, shard key, row, order within the row),
    # document copies in writing order
    stream = copy_stream(copies)
    doc, start, log2 = stage.pieces(corpus, np.arange(num_docs), lengths)
    n_pieces = np.bincount(doc, minlength=num_docs)
    piece = _ranges((np.cumsum(n_pieces) - n_pieces)[stream], n_pieces[stream])
    writers: list[TokenShardWriter] = []
    grouped = p.group_column is not None
    frags: list[tuple] = []
    for k in range(p.min_log2, p.max_log2 + 1):
        w = TokenShardWriter(partial, f"len_{1 << k}", 1 << k, dtype, p.shard_tokens, grouped)
        sel = piece[log2[piece] == k]
        rank = np.arange(len(sel), dtype=np.int64)
        key = (len(writers) << _KEY_BITS) + rank // w.per_shard
        row, within = rank % w.per_shard, np.zeros_like(rank)  # one piece per bucket row
        frags.append((doc[sel], start[sel], np.full(len(sel), 1 << k), key, row, within))
        writers.append(w)
    if p.concat:  # the stream's tokens cut every `size`; the last partial chunk dropped
        size = p.concat_len or 1 << p.max_log2
        w = TokenShardWriter(partial, f"concat/len_{size}", size, dtype, p.shard_tokens, grouped)
        n = lengths[stream]
        ends = np.cumsum(n)
        starts = ends - n
        last = np.minimum((ends - 1) // size, int(n.sum()) // size - 1)
        touched = np.where(n > 0, np.maximum(last - starts // size + 1, 0), 0)
        e = np.repeat(np.arange(len(stream)), touched)  # stream entry: order in the row
        j = _ranges(starts // size, touched)
        begin = np.maximum(starts[e], j * size)
        length = np.minimum(ends[e], (j + 1) * size) - begin
        key = (len(writers) << _KEY_BITS) + j // w.per_shard
        frags.append((stream[e], begin - starts[e], length, key, j % w.per_shard, e))
        writers.append(w)
    doc_f, start_f, length_f, key_f, seq_f, frag_f = (
        np.concatenate(c) for c in zip(*frags, strict=True)
    )
    plan = _by_file(
        file_of[doc_f],
        [row_of[doc_f], start_f, length_f.astype(np.int64), key_f, seq_f, frag_f],
    )
    index = {w.name: i for i, w in enumerate(writers)}
    columns = {(index[name] << _KEY_BITS) + s: blob for (name, s), blob in captured.items()}

    expected = {key: pa.ipc.open_stream(blob).read_all().num_rows for key, blob in columns.items()}

    # 4. shard files, one task each
    sc = spark.sparkContext
    plan, columns = sc.broadcast(plan), sc.broadcast(columns)
    try:
        fragments = files.mapInArrow(_fragments(data, plan, dtype), _FRAGMENTS)
        written = (
            fragments.repartition("key")
            .sortWithinPartitions("key", "seq", "frag")
            .mapInArrow(_shard_writer(writers, dtype, columns), "key long, sequences long")
            .collect()
        )
    finally:
        plan.destroy()
        columns.destroy()
    if {r["key"]: r["sequences"] for r in written} != expected:
        raise LedgerError("decompose: the shard files written do not match the plan")

    # 5. kept parts: one per id-ordered chunk, as locally
    count = StageCount(rows_in=data.num_rows)
    part_of, n_seq, dropped = (np.zeros(num_docs, np.int64) for _ in range(3))
    for i, (chunk, seqs, drop) in enumerate(chunks):
        part_of[chunk], n_seq[chunk], dropped[chunk] = i, seqs, drop
        stats = {"sequences": float(np.sum(seqs)), "dropped_tokens": float(np.sum(drop))}
        count.add(StageCount(kept=len(chunk), stats=stats))
    kept_plan = _by_file(file_of, [row_of, part_of, np.arange(num_docs), n_seq, dropped])
    target = data.schema.remove(data.schema.get_field_index(TOKENS))
    target = target.append(pa.field("n_sequences", pa.int64()))
    target = target.append(pa.field("dropped_tokens", pa.int64()))
    position = [pa.field(FILE, pa.int64()), pa.field(ROW, pa.int64())]
    struct = spark_schema(pa.schema([*target, *position], metadata=target.metadata))
    kept_plan = sc.broadcast(kept_plan)

    def place(batches):  # each part's rows without tokens, at (kept part, id rank)
        for batch in batches:
            for index, path in zip(
                batch["file"].to_pylist(), batch["path"].to_pylist(), strict=True
            ):
                rows, part, rank, seqs, drop = kept_plan.value[index]
                at = np.empty(len(rows), np.int64)
                at[rows] = np.arange(len(rows))
                table = _read(data, path).drop_columns([TOKENS])
                added = [("n_sequences", seqs), ("dropped_tokens", drop), (FILE, part), (ROW, rank)]
                for name, values in added:
                    table = table.append_column(name, pa.array(values[at]))
                yield from table.to_batches()

    def write_kept(index: int, table: pa.Table) -> None:
        write_part(pass_dir, index, table)

    try:
        parts = write_parts(files.mapInArrow(place, struct), target, write_kept)
    finally:
        kept_plan.destroy()
    if sum(part["rows"] for part in parts.values()) != num_docs:
        raise LedgerError("decompose: kept parts do not hold every document")

    # 6. manifest
    manifest = stage.manifest(meta, dtype, lengths, copies, mix_info, **infos)
    stage.publish(partial, manifest)
    return count
