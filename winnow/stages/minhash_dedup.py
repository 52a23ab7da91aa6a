"""``minhash_dedup``: near-duplicate clusters by MinHash LSH, one document kept per cluster.

The signature and shingle-set helpers here are shared with the Spark backend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field, model_validator

from winnow.kernels import clusters
from winnow.kernels.minhash import MinHasher, TextNorm, band_keys, lsh_params
from winnow.stages.base import GlobalStage, Materialized, Output, Params
from winnow.stages.dedup_engine import (
    DedupParams,
    check_unique_ids,
    connect_duckdb,
    emit,
    fresh_dir,
    no_rows,
    require_columns,
    scan,
    split_decision,
)
from winnow.table import ID, TEXT

NEAR_COLUMNS = {"cluster_id": pa.string(), "cluster_size": pa.int64()}


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
    """Lowercase the text."""
    digits: bool = True
    """Replace every run of digits (with one decimal part) by ``0``."""
    punctuation: bool = True
    """Turn Unicode punctuation, symbols and control characters into spaces."""
    diacritics: bool = True
    """Drop diacritics (NFD, then remove combining marks)."""
    whitespace: bool = True
    """Collapse whitespace runs to one space and trim."""


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
    spark_backend = "winnow.spark.backends.minhash_dedup:run"

    class Params(DedupParams):
        column: str = TEXT
        """The text column to shingle."""
        unit: Literal["word", "char"] = "word"
        """Shingle unit: word n-grams or character n-grams."""
        ngram: int = Field(5, ge=1)
        """Shingle length in units (FineWeb: 5 words)."""
        normalize: Normalization = Field(default_factory=Normalization)
        """Text normalisation before shingling, each step switchable."""
        bands: int | None = Field(14, ge=1)
        """LSH bands (FineWeb: 14); null with ``rows`` to derive both from ``threshold``."""
        rows: int | None = Field(8, ge=1)
        """Signature values per band (FineWeb: 8); null with ``bands`` to derive both."""
        num_perm: int | None = Field(None, ge=1)
        """Signature length; null: ``bands * rows``, or 128 when the bands are derived."""
        threshold: float = Field(0.8, gt=0.0, le=1.0)
        """Jaccard similarity target of verification (and of the derived LSH bands)."""
        fp_weight: float = Field(0.5, ge=0.0)
        """Weight of the false-positive area in the band search, as in datasketch."""
        fn_weight: float = Field(0.5, ge=0.0)
        """Weight of the false-negative area in the band search, as in datasketch."""
        verify: Literal["none", "jaccard", "signature"] = "none"
        """Candidate check against ``threshold``: none (FineWeb's setting), the exact
        Jaccard of the shingle sets, or the share of equal signature values."""
        scheme: Literal["affine32", "affine64", "mersenne"] = "affine32"
        """MinHash permutation scheme (datasketch's; ``mersenne`` is its ``legacy``)."""
        hash: Literal["fast", "sha1"] = "fast"
        """Shingle hash function; ``sha1`` reproduces datasketch's default (slow)."""

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
        require_columns(data, [ID, p.column, p.keep_column])
        bands, rows, _ = p.lsh()
        hasher = self.hasher()
        parts = fresh_dir(workdir / "minhash_sigs")
        columns = list(dict.fromkeys([ID, p.column, *([p.keep_column] if p.keep_column else [])]))
        for i, (pos, table) in enumerate(scan(data, columns, p.batch_rows)):
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
            yield from (no_rows(t, NEAR_COLUMNS) for t in data.tables())
            return

        con = connect_duckdb(workdir, p.memory_limit)
        glob = str(parts / "*.parquet")
        check_unique_ids(con, glob)
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
            kept, rejected = split_decision(table, decision, "near_duplicate_of:", added)
            out = Output(kept, rejected, stats={"near_duplicates": rejected.num_rows, **stats})
            stats.clear()  # corpus-wide figures go with the first chunk only
            return out

        yield from emit(data, reader, finish)
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
        for pos, table in scan(data, [self.params.column], self.params.batch_rows):
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
