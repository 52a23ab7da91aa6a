"""Exact and near-duplicate removal (global stages, local DuckDB/numpy/scipy backend).

Both stages run in three steps over the materialised input:

1. **Scan** every input file in order, in slices of ``batch_rows``, and spill one
   Parquet part per slice to the workdir: the row's position, id, keep-policy
   column and the dedup keys (key hash, or MinHash band keys and signatures).
2. **Decide** in DuckDB (memory-limited, spilling to the workdir): group rows,
   rank each group by the keep policy and record, per position, whether the row is
   kept, its group size and the kept row's id. Groups, centres and winners depend
   on ids only, so results do not depend on sharding, worker count or input order.
3. **Emit** one ``Output`` per input file, in input order, streaming the decisions
   back in position order.

The math (normalisation, shingles, signatures, band keys, star edges, keep order)
lives in ``winnow.kernels`` and is shared with the Spark backend.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field, field_validator, model_validator

from winnow.errors import InputError
from winnow.kernels import clusters
from winnow.kernels.minhash import MinHasher, TextNorm, band_keys, lsh_params, normalize
from winnow.stages.base import GlobalStage, Materialized, Output, Params
from winnow.table import ID, TEXT, mark_rejected, set_column

KeepPolicy = clusters.KeepPolicy


class _DedupParams(Params):
    keep: KeepPolicy = "lowest_id"
    keep_column: str | None = None  # the score (highest_score) or date (oldest) column
    batch_rows: int = Field(8192, ge=1)  # rows per scan slice (and Parquet part)
    memory_limit: str = "4GB"  # DuckDB's limit; it spills to the workdir beyond it

    @model_validator(mode="after")
    def _keep_needs_column(self):
        if self.keep != "lowest_id" and not self.keep_column:
            raise ValueError(f"keep: {self.keep} needs keep_column")
        return self


# --------------------------------------------------------------------- local engine


def _require(data: Materialized, columns: list[str | None]) -> None:
    missing = [c for c in columns if c and c not in data.schema.names]
    if missing:
        raise InputError(f"input has no column(s) {', '.join(missing)}")


def _scan(data: Materialized, columns: list[str], rows: int) -> Iterator[tuple[int, pa.Table]]:
    """``(position of the first row, slice)`` over all files, in order."""
    pos = 0
    for table in data.tables(columns):
        for start in range(0, table.num_rows, rows):
            part = table.slice(start, rows)
            yield pos, part
            pos += part.num_rows


def _fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def _connect(workdir: Path, memory_limit: str):
    import duckdb

    tmp = _fresh(workdir / "duckdb_tmp")
    return duckdb.connect(
        config={"temp_directory": str(tmp), "memory_limit": memory_limit},
    )


def _check_unique_ids(con, parts: str) -> None:
    dupes = con.execute(
        f"SELECT id FROM read_parquet('{parts}') GROUP BY id HAVING count(*) > 1 LIMIT 3"
    ).fetchall()
    if dupes:
        shown = ", ".join(repr(d[0]) for d in dupes)
        raise InputError(f"ids must be unique; repeated: {shown}")


def _emit(
    data: Materialized,
    reader: pa.RecordBatchReader,
    finish: Callable[[pa.Table, pa.Table], Output],
) -> Iterator[Output]:
    """Pair each input file with the next ``num_rows`` decision rows (position order)."""
    pending: list[pa.RecordBatch] = []
    buffered = 0
    for table in data.tables():
        while buffered < table.num_rows:
            batch = reader.read_next_batch()
            pending.append(batch)
            buffered += batch.num_rows
        rows = pa.Table.from_batches(pending, reader.schema).combine_chunks()
        decision, rest = rows.slice(0, table.num_rows), rows.slice(table.num_rows)
        pending, buffered = rest.to_batches(), rest.num_rows
        yield finish(table, decision)


def _split(
    table: pa.Table, decision: pa.Table, prefix: str, added: list[str]
) -> tuple[pa.Table, pa.Table]:
    """Kept rows gain the ``added`` decision columns; the others a reason naming the
    kept row."""
    keep = decision["keep"]
    kept = table.filter(keep)
    for name in added:
        kept = set_column(kept, name, decision[name].filter(keep).combine_chunks())
    dropped = pc.invert(keep)
    reasons = pc.binary_join_element_wise(prefix, decision["kept_id"].filter(dropped), "")
    return kept, mark_rejected(table.filter(dropped), reasons.combine_chunks())


# ---------------------------------------------------------------------- exact dedup


class ExactDedup(GlobalStage):
    """Drop rows whose key equals an earlier-ranked row's key.

    The key is ``column`` (default ``text``) or a DuckDB SQL expression ``sql`` over
    the row, normalised by ``normalize`` (``none``; ``lower_space``: lowercase,
    whitespace runs to one space, trimmed; ``minhash``: the near-dedup
    normalisation, also dropping punctuation, digits and diacritics). Null keys are
    never duplicates. Keys are compared by hash: xxh3-128 by default, or xxh3-64
    (half the spill size). With ``n`` distinct keys the chance of any false merge is
    about ``n^2 / 2^(bits+1)``: ~3% at 10^9 keys with 64 bits, ~10^-21 with 128.

    Per group of equal keys one row is kept: the lowest id (``keep: lowest_id``), the
    highest ``keep_column`` (``highest_score``) or the smallest ``keep_column``
    (``oldest``), nulls last, ties to the lowest id. It gains ``dup_count`` (group
    size, int64); the others are rejected as ``exact_duplicate_of:<kept id>``.
    """

    name = "exact_dedup"

    class Params(_DedupParams):
        column: str = TEXT
        sql: str | None = None  # a DuckDB expression over the row's columns; wins over column
        normalize: Literal["none", "lower_space", "minhash"] = "none"
        hash_bits: Literal[64, 128] = 128

        @field_validator("sql")
        @classmethod
        def _parses(cls, expr: str | None) -> str | None:
            from winnow.sql import check_expression

            return None if expr is None else check_expression(expr)

    def _keys(self, table: pa.Table) -> pa.Array:
        p = self.params
        if p.sql:
            from winnow.sql import connect, evaluate

            self._con = getattr(self, "_con", None) or connect()
            key = evaluate(self._con, table, {"k": p.sql})["k"]
        else:
            key = table[p.column]
        key = key.combine_chunks() if isinstance(key, pa.ChunkedArray) else key
        if p.normalize != "none" or not pa.types.is_binary(key.type):
            key = key.cast(pa.string())
        if p.normalize == "lower_space":
            key = pc.utf8_trim_whitespace(
                pc.replace_substring_regex(pc.utf8_lower(key), r"\s+", " ")
            )
        elif p.normalize == "minhash":
            key = pc.if_else(pc.is_null(key), key, normalize(key, TextNorm()))
        return key

    def _hashes(self, key: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import xxhash

        values = key.cast(pa.binary()).to_pylist()
        n = len(values)
        hi, lo, null = np.zeros(n, np.uint64), np.zeros(n, np.uint64), np.zeros(n, bool)
        wide = self.params.hash_bits == 128
        for i, v in enumerate(values):
            if v is None:
                null[i] = True
            elif wide:
                h = xxhash.xxh3_128_intdigest(v)
                hi[i], lo[i] = h >> 64, h & 0xFFFFFFFFFFFFFFFF
            else:
                hi[i] = xxhash.xxh3_64_intdigest(v)
        return hi, lo, null

    def run(self, data: Materialized, workdir: Path) -> Iterator[Output]:
        p = self.params
        key_cols = list(data.schema.names) if p.sql else [p.column]
        _require(data, [ID, *key_cols, p.keep_column])
        parts = _fresh(Path(workdir) / "exact_keys")
        columns = list(dict.fromkeys([ID, *key_cols, *([p.keep_column] if p.keep_column else [])]))
        for i, (pos, table) in enumerate(_scan(data, columns, p.batch_rows)):
            hi, lo, null = self._hashes(self._keys(table))
            out = {
                "pos": np.arange(pos, pos + table.num_rows, dtype=np.int64),
                "id": table[ID],
                "h1": pa.array(hi, mask=null),
                "h2": lo,
            }
            if p.keep_column:
                out["k"] = table[p.keep_column]
            pq.write_table(pa.table(out), parts / f"part-{i:06d}.parquet")

        if not any(parts.iterdir()):  # no rows at all
            yield from (_no_rows(t, EXACT_COLUMNS) for t in data.tables())
            return
        con = _connect(Path(workdir), p.memory_limit)
        glob = str(parts / "*.parquet")
        _check_unique_ids(con, glob)
        order = clusters.keep_order_sql(p.keep, "k" if p.keep_column else None)
        con.execute(
            f"""
            CREATE TABLE decision AS
            SELECT pos, id, count(*) OVER g AS dup_count,
                   first_value(id) OVER (g ORDER BY {order}) AS kept_id
            FROM read_parquet('{glob}')
            WINDOW g AS (PARTITION BY h1, h2, CASE WHEN h1 IS NULL THEN pos END)
            """
        )
        reader = con.sql(
            "SELECT kept_id = id AS keep, dup_count, kept_id FROM decision ORDER BY pos"
        ).to_arrow_reader(p.batch_rows)

        def finish(table: pa.Table, decision: pa.Table) -> Output:
            kept, rejected = _split(table, decision, "exact_duplicate_of:", ["dup_count"])
            return Output(kept, rejected, stats={"exact_duplicates": rejected.num_rows})

        yield from _emit(data, reader, finish)
        con.close()


EXACT_COLUMNS = {"dup_count": pa.int64()}
NEAR_COLUMNS = {"cluster_id": pa.string(), "cluster_size": pa.int64()}


def _no_rows(table: pa.Table, columns: dict[str, pa.DataType]) -> Output:
    """The output for an empty input file: no rows, the usual columns."""
    kept = table
    for name, type_ in columns.items():
        kept = set_column(kept, name, pa.array([], type_))
    return Output(kept, mark_rejected(table, pa.array([], pa.string())))


# ----------------------------------------------------------------------- near dedup


def signature_bytes(sig: np.ndarray) -> pa.Array:
    """One fixed-size binary value per signature (row of ``sig``)."""
    width = sig.shape[1] * sig.itemsize
    return pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(width), len(sig), [None, pa.py_buffer(sig.tobytes())]
    )


def signature_rows(blob: pa.Array | pa.ChunkedArray, scheme: str) -> np.ndarray:
    """The ``(rows, num_perm)`` signatures back from ``signature_bytes`` values (of any
    binary type)."""
    if isinstance(blob, pa.ChunkedArray):
        blob = blob.combine_chunks()
    blob = blob.cast(pa.large_binary())
    offs = np.frombuffer(blob.buffers()[1], np.int64)[blob.offset :]
    raw = np.frombuffer(blob.buffers()[2], np.uint8)[offs[0] : offs[len(blob)]]
    dtype = np.uint64 if scheme == "affine64" else np.uint32
    return raw.view(dtype).reshape(len(blob), -1)


def shingle_sets(
    hasher: MinHasher, texts: pa.Array | pa.ChunkedArray
) -> tuple[np.ndarray, np.ndarray]:
    """Each text's shingle set as sorted unique hashes: ``(values, offsets)``, the sets
    ``clusters.pair_jaccard`` compares."""
    hashes, offsets = hasher.shingle_hashes(texts)
    doc = np.repeat(np.arange(len(texts)), np.diff(offsets))
    order = np.lexsort((hashes, doc))
    doc, hashes = doc[order], hashes[order]
    fresh = np.ones(len(doc), bool)
    fresh[1:] = (doc[1:] != doc[:-1]) | (hashes[1:] != hashes[:-1])
    counts = np.bincount(doc[fresh], minlength=len(texts))
    return hashes[fresh], np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


class Normalization(Params):
    """Text normalisation before shingling (each step switchable)."""

    lowercase: bool = True
    digits: bool = True
    punctuation: bool = True
    diacritics: bool = True
    whitespace: bool = True


class MinhashDedup(GlobalStage):
    """Cluster near-duplicates by MinHash LSH and keep one document per cluster.

    Shingles are word n-grams (``ngram``, default 5; ``unit: char`` for character
    n-grams) of the normalised ``column``; a document with fewer than ``ngram``
    words is one shingle, one with no words never matches anything. Signatures have
    ``num_perm`` values (default ``bands * rows``) from ``winnow.kernels.minhash``
    (``scheme``/``hash`` choose datasketch-identical variants; the stage seed is the
    permutation seed). Two documents are candidates when they agree on all ``rows``
    values of one of ``bands`` bands: probability ``1 - (1 - s^rows)^bands`` at
    Jaccard ``s``. Default 14 x 8 (FineWeb), ~0.72 at 50%; set ``bands`` and
    ``rows`` to null to derive them from ``threshold`` and ``num_perm`` (default 128)
    by minimising ``fp_weight`` x false-positive + ``fn_weight`` x false-negative area.

    Candidate edges join each bucket member to the member with the smallest id; the
    connected components are the clusters, and each keeps one document by the keep
    policy (as in ``exact_dedup``). ``verify`` checks similarity against
    ``threshold``: ``jaccard`` by the exact Jaccard of the shingle sets (candidates
    are shingled again), ``signature`` by the share of equal signature values. It
    drops failing candidate edges, and a member is then removed only if it also
    passes against its cluster's kept document; those that fail are clustered
    again among themselves, so a chain A~B~C never removes C for a dissimilar A.
    Kept rows gain ``cluster_id`` (the smallest id in the group) and
    ``cluster_size``; the others are rejected as ``near_duplicate_of:<kept id>``.
    """

    name = "minhash_dedup"

    class Params(_DedupParams):
        column: str = TEXT
        unit: Literal["word", "char"] = "word"
        ngram: int = Field(5, ge=1)
        normalize: Normalization = Field(default_factory=Normalization)
        bands: int | None = Field(14, ge=1)
        rows: int | None = Field(8, ge=1)
        num_perm: int | None = Field(None, ge=1)
        threshold: float = Field(0.8, gt=0.0, le=1.0)  # verification (and LSH) target
        fp_weight: float = Field(0.5, ge=0.0)  # band search weights, as datasketch's
        fn_weight: float = Field(0.5, ge=0.0)
        verify: Literal["none", "jaccard", "signature"] = "none"  # none: FineWeb's setting
        scheme: Literal["affine32", "affine64", "mersenne"] = "affine32"  # permutations
        hash: Literal["fast", "sha1"] = "fast"  # shingle hash; sha1 = datasketch default

        @model_validator(mode="after")
        def _check_bands(self):
            if (self.bands is None) != (self.rows is None):
                raise ValueError("set both bands and rows, or neither (to use threshold)")
            if self.bands and self.num_perm and self.num_perm < self.bands * self.rows:
                raise ValueError(
                    f"num_perm {self.num_perm} < bands x rows = {self.bands * self.rows}"
                )
            return self

        def lsh(self) -> tuple[int, int, int]:
            """``(bands, rows, num_perm)``."""
            if self.bands is not None:
                return self.bands, self.rows, self.num_perm or self.bands * self.rows
            num_perm = self.num_perm or 128
            bands, rows = lsh_params(self.threshold, num_perm, self.fp_weight, self.fn_weight)
            return bands, rows, num_perm

    def hasher(self) -> MinHasher:
        p = self.params
        return MinHasher(
            num_perm=p.lsh()[2],
            seed=self.seed,
            ngram=p.ngram,
            unit=p.unit,
            norm=TextNorm(**p.normalize.model_dump()),
            hash=p.hash,
            scheme=p.scheme,
        )

    def run(self, data: Materialized, workdir: Path) -> Iterator[Output]:
        p, workdir = self.params, Path(workdir)
        _require(data, [ID, p.column, p.keep_column])
        bands, rows, _ = p.lsh()
        hasher = self.hasher()
        parts = _fresh(workdir / "minhash_sigs")
        columns = list(dict.fromkeys([ID, p.column, *([p.keep_column] if p.keep_column else [])]))
        for i, (pos, table) in enumerate(_scan(data, columns, p.batch_rows)):
            sig, count = hasher.signatures(table[p.column])
            keys, empty = band_keys(sig, bands, rows), count == 0
            out = {"pos": np.arange(pos, pos + table.num_rows, dtype=np.int64), "id": table[ID]}
            out |= {f"b{b}": pa.array(keys[:, b], mask=empty) for b in range(bands)}
            if p.verify == "signature":
                out["sig"] = signature_bytes(sig)
            if p.keep_column:
                out["k"] = table[p.keep_column]
            pq.write_table(pa.table(out), parts / f"part-{i:06d}.parquet")
        if not any(parts.iterdir()):  # no rows at all
            yield from (_no_rows(t, NEAR_COLUMNS) for t in data.tables())
            return

        con = _connect(workdir, p.memory_limit)
        glob = str(parts / "*.parquet")
        _check_unique_ids(con, glob)
        keep_col = ", k" if p.keep_column else ""
        con.execute(
            f"""CREATE TABLE docs AS SELECT pos, id, row_number() OVER (ORDER BY id) - 1
            AS node{keep_col} FROM read_parquet('{glob}')"""
        )
        union = " UNION ALL ".join(
            f"SELECT pos, {b} AS band, b{b} AS key FROM read_parquet('{glob}') "
            f"WHERE b{b} IS NOT NULL"
            for b in range(bands)
        )
        con.execute(
            f"CREATE TABLE bands AS SELECT node, band, key FROM ({union}) JOIN docs USING (pos)"
        )
        edges = con.execute(clusters.STAR_EDGES_SQL).fetchnumpy()
        src, dst = edges["src"].astype(np.int64), edges["dst"].astype(np.int64)
        con.execute("DROP TABLE bands")
        stats = {"candidate_edges": float(len(src))}
        score = None
        if p.verify != "none" and len(src):
            score = self._scorer(con, data, glob, np.union1d(src, dst), hasher)
            good = score(src, dst) >= p.threshold
            src, dst = src[good], dst[good]
            stats["verified_edges"] = float(len(src))

        # Keep-policy priority of every node, then the kept node of each document.
        order = clusters.keep_order_sql(p.keep, "k" if p.keep_column else None)
        by_priority = con.sql(f"SELECT node FROM docs ORDER BY {order}").fetchnumpy()["node"]
        n = len(by_priority)
        priority = np.empty(n, np.int64)
        priority[by_priority] = np.arange(n)
        labels = clusters.components(n, src, dst)
        kept = clusters.resolve_groups(labels, priority, score, p.threshold)
        size = np.bincount(kept, minlength=n)
        smallest = np.arange(n)
        np.minimum.at(smallest, kept, np.arange(n))
        grouped = np.flatnonzero(size[kept] > 1)  # everything else is a kept singleton
        con.register(
            "groups",
            pa.table(
                {
                    "node": grouped,
                    "kept_node": kept[grouped],
                    "size": size[kept[grouped]],
                    "smallest": smallest[kept[grouped]],
                }
            ),
        )
        reader = con.sql(
            """
            SELECT coalesce(g.kept_node = d.node, true) AS keep,
                   coalesce(g.size, 1) AS cluster_size,
                   coalesce(c.id, d.id) AS cluster_id,
                   k.id AS kept_id
            FROM docs d LEFT JOIN groups g USING (node)
                 LEFT JOIN docs k ON k.node = g.kept_node
                 LEFT JOIN docs c ON c.node = g.smallest
            ORDER BY d.pos
            """
        ).to_arrow_reader(p.batch_rows)

        def finish(table: pa.Table, decision: pa.Table) -> Output:
            added = ["cluster_id", "cluster_size"]
            kept, rejected = _split(table, decision, "near_duplicate_of:", added)
            out = Output(kept, rejected, stats={"near_duplicates": rejected.num_rows, **stats})
            stats.clear()  # corpus-wide figures go with the first chunk only
            return out

        yield from _emit(data, reader, finish)
        con.close()

    def _scorer(self, con, data, glob, nodes, hasher) -> Callable:
        """``score(u, v)``: similarity of node pairs among ``nodes`` (sorted), by the
        ``verify`` mode: exact Jaccard of shingle sets, or signature agreement."""
        if self.params.verify == "signature":
            con.register("cand", pa.table({"node": nodes}))
            got = con.sql(
                f"""SELECT d.node, r.sig FROM read_parquet('{glob}') r JOIN docs d USING (pos)
                WHERE d.node IN (SELECT node FROM cand) ORDER BY d.node"""
            ).to_arrow_table()
            sigs = signature_rows(got["sig"], hasher.scheme)

            def score(u: np.ndarray, v: np.ndarray) -> np.ndarray:
                a, b = np.searchsorted(nodes, u), np.searchsorted(nodes, v)
                return clusters.signature_agreement(sigs[a], sigs[b])

            return score
        values, offsets = self._shingle_sets(con, data, nodes, hasher)

        def score(u: np.ndarray, v: np.ndarray) -> np.ndarray:
            a, b = np.searchsorted(nodes, u), np.searchsorted(nodes, v)
            return clusters.pair_jaccard(values, offsets, a, b)

        return score

    def _shingle_sets(self, con, data, nodes, hasher) -> tuple[np.ndarray, np.ndarray]:
        """Sorted unique shingle hashes of each candidate node (in ``nodes`` order)."""
        node_of = con.execute("SELECT node FROM docs ORDER BY pos").fetchnumpy()["node"]
        wanted = np.zeros(len(node_of), bool)
        wanted[nodes] = True
        got_nodes, got_values, got_counts = [], [], []
        for pos, table in _scan(data, [self.params.column], self.params.batch_rows):
            node = node_of[pos : pos + table.num_rows]
            take = np.flatnonzero(wanted[node])
            if not len(take):
                continue
            values, offsets = shingle_sets(hasher, table[self.params.column].take(take))
            got_nodes.append(node[take])
            got_values.append(values)
            got_counts.append(np.diff(offsets))
        order = np.argsort(np.concatenate(got_nodes))
        counts = np.concatenate(got_counts)
        starts = np.concatenate([[0], np.cumsum(counts)])[:-1]
        values = np.concatenate(got_values)
        sizes = counts[order]
        idx = np.repeat(starts[order] - np.concatenate([[0], np.cumsum(sizes)])[:-1], sizes)
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        return values[idx + np.arange(offsets[-1])], offsets
