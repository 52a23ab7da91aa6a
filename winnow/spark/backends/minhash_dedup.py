"""``minhash_dedup`` on Spark: signatures and band keys in the workers, star edges,
connected components, optional verification and the keep policy by windows."""

from __future__ import annotations

from functools import reduce

import numpy as np
import pyarrow as pa
from pyspark.sql import Window
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, StructField, StructType

from winnow.kernels import clusters
from winnow.kernels.minhash import band_keys
from winnow.spark.components import connected_components
from winnow.spark.frames import (
    FILE,
    ROW,
    check_unique_ids,
    frame_backend,
    keep_order,
    keys_frame,
    materialise,
    rejected_rows,
    set_columns,
)
from winnow.stages.base import Materialized
from winnow.stages.dedup_engine import require_columns
from winnow.stages.minhash_dedup import shingle_sets, signature_bytes, signature_rows
from winnow.table import ID, conform


def decide(stage, df, data: Materialized):
    """``minhash_dedup``: signatures and band keys in the workers
    (``winnow.kernels.minhash``), star edges from a window per (band, key), connected
    components by large-star / small-star rounds, keep policy by a window per group.

    Documents are numbered by position (``_file << 32 | _row``): component labels
    never reach the output, while each bucket's centre is its smallest *id*, as in
    ``clusters.STAR_EDGES_SQL``, so the candidate edges (and their count) are the
    local stage's. With ``verify``, the edges are scored in the workers with the local
    math (``_scored``), the components are those of the verified edges, and
    ``_resolve`` checks their members against the kept document as
    ``clusters.resolve_groups`` does; a group is then a kept document and the
    members that joined it.
    """

    p = stage.params
    require_columns(data, [ID, p.column, p.keep_column])
    bands, rows, _ = p.lsh()
    hasher = stage.hasher()

    def compute(table):
        sig, count = hasher.signatures(table[p.column])
        keys = band_keys(sig, bands, rows).view(np.int64)
        offsets = pa.array(np.arange(0, keys.size + 1, bands, dtype=np.int32))
        lists = pa.ListArray.from_arrays(offsets, pa.array(keys.ravel()), mask=pa.array(count == 0))
        out = {"_bands": lists}
        if p.verify == "signature":
            out["_sig"] = signature_bytes(sig)
        if p.keep_column:
            out["_k"] = table[p.keep_column]
        return out

    fields = {"_bands": pa.list_(pa.int64())}
    if p.verify == "signature":
        fields["_sig"] = pa.binary()
    if p.keep_column:
        fields["_k"] = data.schema.field(p.keep_column).type
    # Materialised once: signatures are the costly part, and the frame is used twice.
    keys = materialise(keys_frame(df, data, fields, compute).select("*", _node()))
    check_unique_ids(keys)

    bucket = Window.partitionBy("band", "key")
    centre = F.min(F.struct(F.col(ID), F.col("_node"))).over(bucket)["_node"]
    members = keys.select("_node", ID, F.posexplode("_bands").alias("band", "key"))
    edges = members.select(F.col("_node").alias("a"), centre.alias("b")).where("a <> b").distinct()
    edges = materialise(edges)
    stats = {"near_duplicates": None, "candidate_edges": float(edges.count())}

    order = keep_order(p.keep)
    keep_col = ["_k"] if p.keep_column else []
    docs = keys.select(FILE, ROW, ID, F.col("_node").alias("a"), *keep_col)
    if p.verify != "none" and stats["candidate_edges"]:
        ends = edges.select(F.col("a").alias("_node")).union(edges.select("b")).distinct()
        payloads = materialise(_verify_payloads(stage, df, keys, ends, data))
        scored = materialise(_scored(stage, edges, "a", "b", payloads))
        verified = scored.where("_ok").select("a", "b")
        stats["verified_edges"] = float(verified.count())
        roots = _resolve(stage, connected_components(verified), docs, payloads, order)
    else:
        roots = connected_components(edges)  # (a, b): node a's component is labelled b
    labels = roots.unionByName(roots.select(F.col("b").alias("a"), "b").distinct())

    group = Window.partitionBy("b")
    decided = labels.join(docs, "a").select(
        FILE,
        ROW,
        F.count(F.lit(1)).over(group).alias("_size"),
        F.min(ID).over(group).alias("_cluster"),
        F.first(ID).over(group.orderBy(*order)).alias("_kept_id"),
    )
    joined = df.join(decided, [FILE, ROW], "left")
    keep = F.col("_kept_id").isNull() | (F.col("_kept_id") == F.col(ID).cast("string"))
    added = {
        "cluster_id": F.coalesce(F.col("_cluster"), F.col(ID).cast("string")),
        "cluster_size": F.coalesce(F.col("_size"), F.lit(1).cast("long")),
    }
    kept = joined.where(keep).select(*set_columns(df, added))
    rejected = rejected_rows(df, joined.where(~keep), "near_duplicate_of:", F.col("_kept_id"))
    return kept, rejected, stats


def _node():
    """A row's node number in ``spark_minhash_dedup``: its position."""

    return (F.shiftleft(F.col(FILE), 32) + F.col(ROW)).alias("_node")


def _verify_payloads(stage, df, keys, nodes, data: Materialized):
    """``(_node, _value)`` for the ``nodes`` frame's nodes: what ``verify`` compares.
    ``signature``: the signature bytes (from the key frame); ``jaccard``: the text's
    sorted unique shingle hashes (``dedup.shingle_sets``, as the local stage)."""

    if stage.params.verify == "signature":
        return keys.select("_node", F.col("_sig").alias("_value")).join(nodes, "_node", "left_semi")
    column = stage.params.column
    field = pa.schema([data.schema.field(column)])
    hasher = stage.hasher()
    texts = df.select(_node(), column).join(nodes, "_node", "left_semi")

    def sets(batches):
        for batch in batches:
            text = conform(pa.table({column: batch[column]}), field)[column]
            values, offsets = shingle_sets(hasher, text)
            lists = pa.ListArray.from_arrays(offsets.astype(np.int32), values.view(np.int64))
            yield pa.record_batch({"_node": batch["_node"], "_value": lists})

    return texts.mapInArrow(sets, "_node long, _value array<long>")


def _scored(stage, pairs, x: str, y: str, payloads):
    """``pairs`` plus ``_ok``: whether nodes ``x`` and ``y`` reach ``threshold`` by the
    local similarity (``clusters.signature_agreement`` of the signatures or
    ``clusters.pair_jaccard`` of the shingle sets), computed in the workers."""

    p = stage.params
    names = pairs.columns
    joined = pairs.join(
        payloads.select(F.col("_node").alias(x), F.col("_value").alias("_vx")), x
    ).join(payloads.select(F.col("_node").alias(y), F.col("_value").alias("_vy")), y)

    def score(batches):
        for batch in batches:
            u, v = batch["_vx"], batch["_vy"]
            if p.verify == "signature":
                sim = clusters.signature_agreement(
                    signature_rows(u, p.scheme), signature_rows(v, p.scheme)
                )
            else:  # set i is u[i], set len(u) + i is v[i]
                sets = pa.concat_arrays([u, v])
                offsets = np.asarray(sets.offsets) - sets.offsets[0].as_py()
                i = np.arange(len(u))
                sim = clusters.pair_jaccard(sets.flatten().to_numpy(), offsets, i, i + len(u))
            ok = pa.array(sim >= p.threshold)
            yield pa.record_batch([*(batch[n] for n in names), ok], [*names, "_ok"])

    schema = StructType([*pairs.schema.fields, StructField("_ok", BooleanType(), False)])
    return joined.mapInArrow(score, schema)


def _resolve(stage, roots, docs, payloads, order, max_rounds: int = 64):
    """``clusters.resolve_groups`` over the verified components ``roots`` (as from
    ``connected_components``): ``(a, b)`` for every node ``a`` that joins kept node
    ``b``. Each round, per component, the pending node first by the keep order is
    kept and the other pending nodes are scored against it; those that fail stay
    pending, in the same component, for the next round. So there is one round more
    than the most times one node fails (bounded by the size of its component), at
    most ``max_rounds`` as locally (nodes still pending then stay alone); each round
    is materialised. Only node numbers and ids cross rounds, never the texts."""

    nodes = roots.unionByName(roots.select(F.col("b").alias("a"), "b").distinct())
    pending = nodes.withColumnRenamed("b", "_label").join(docs.drop(FILE, ROW), "a")
    first = Window.partitionBy("_label").orderBy(*order)
    joins = []
    for _ in range(max_rounds):
        ranked = pending.withColumn("b", F.first("a").over(first)).where("a <> b")
        scored = materialise(_scored(stage, ranked, "a", "b", payloads))
        joins.append(scored.where("_ok").select("a", "b"))
        pending = scored.where("NOT _ok").drop("b", "_ok")
        if pending.isEmpty():
            break
    return reduce(lambda x, y: x.unionByName(y), joins)


run = frame_backend(decide)
