"""The Spark runner: the same plan, run directory, ledger and manifest as the local runner.

``SparkRunner`` subclasses ``LocalRunner`` and changes only how passes execute:

- **map passes**: one ``mapInArrow`` per fused chain over a DataFrame with one row
  (and one partition, so one Spark task) per ``MapTask``. Each task runs the local
  runner's ``run_map_task``: it reads its chunk or upstream part, runs the fused
  stages and writes its part, rejected rows and marker atomically, so a retried
  task rewrites the same bytes. Stage setup is cached per Python worker
  (``spark.python.worker.reuse``, the default). Errors a user can cause come back
  as records, not exceptions, so Spark does not retry them; the driver raises them.
- **global passes**: stages with a Spark backend in ``SPARK_BACKENDS`` (``select``,
  ``exact_dedup``, ``minhash_dedup``) read the parent parts into a DataFrame, decide
  with DataFrame operations (key math shared with the local backend: xxh3 keys,
  MinHash signatures and band keys, star edges to the smallest id, verification
  scores, keep order; connected components by large-star / small-star rounds) and
  write their parts from the executors, one part per input part, rows in input
  order: the same layout as locally. ``decompose`` (``winnow.runners.spark_decompose``,
  ``writes_parts``) writes its shard files and parts itself. Other global stages run
  their local ``run()`` on the driver over the materialised parts, with a warning.

Executors write into the run directory, so it must be on a filesystem they all
share: local disk for ``local[*]``, an NFS or fuse mount on a cluster.

Use: ``python -m winnow.runners.spark PIPELINE.yaml [--master URL] [--force]``, or
``spark-submit [...] winnow/runners/spark.py PIPELINE.yaml``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import reduce
from pathlib import Path

import numpy as np
import pyarrow as pa

from winnow import errors
from winnow.config import PipelineSpec
from winnow.errors import WinnowError
from winnow.io.writers import read_table, write_table
from winnow.ledger import Ledger, StageCount, count_reasons
from winnow.runners.local import LocalRunner, MapTask, _write_rejected, run_map_task
from winnow.runners.spark_combine import spark_combine
from winnow.runners.spark_decompose import spark_decompose
from winnow.stages.base import Materialized
from winnow.table import ID, REASON, conform

log = logging.getLogger("winnow.spark")

FILE, ROW = "_file", "_row"  # a row's position: input part index, row within it


def get_session(master: str | None = None, app_name: str = "winnow", conf: dict | None = None):
    """The active SparkSession, or a new one whose Python workers use this interpreter.

    Without ``master`` the master comes from ``spark-submit``, else ``local[*]``.
    """
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    if master is None and "PYSPARK_GATEWAY_PORT" not in os.environ:
        master = "local[*]"
    if master is not None:
        builder = builder.master(master)
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


# --------------------------------------------------------------------------- errors

_WINNOW_ERROR = re.compile(r"winnow\.errors\.(\w+): ([^\n]*)")


def _error_class(name: str) -> type[WinnowError]:
    cls = getattr(errors, name, WinnowError)
    return cls if isinstance(cls, type) and issubclass(cls, WinnowError) else WinnowError


@contextmanager
def unwrap_errors():
    """Turn a WinnowError raised in a Spark worker back into the one-line error."""
    try:
        yield
    except WinnowError:
        raise
    except Exception as exc:  # Py4JJavaError, PythonException, ...
        found = _WINNOW_ERROR.findall(str(exc))
        if not found:
            raise
        name, message = found[-1]
        raise _error_class(name)(message) from None


# ------------------------------------------------------------------------ map passes


def _run_tasks(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: run each pickled MapTask; yield its marker record as JSON."""
    from pyspark import cloudpickle

    for batch in batches:
        for index, blob in zip(batch["index"].to_pylist(), batch["task"].to_pylist(), strict=True):
            try:
                record = run_map_task(cloudpickle.loads(blob))
            except WinnowError as exc:  # deterministic: report it instead of retrying
                record = {"error": str(exc), "type": type(exc).__name__}
            yield pa.record_batch({"index": [index], "record": [json.dumps(record)]})


# --------------------------------------------------------------------- global passes


def spark_schema(schema: pa.Schema):
    """Arrow schema -> Spark StructType; an unsupported column type is a user error."""
    from pyspark.sql.pandas.types import from_arrow_schema

    try:
        return from_arrow_schema(schema, prefer_timestamp_ntz=True)
    except (TypeError, ValueError) as exc:
        raise errors.InputError(f"a column type has no Spark equivalent: {exc}") from None


def _with_position(schema: pa.Schema) -> pa.Schema:
    return schema.append(pa.field(FILE, pa.int64())).append(pa.field(ROW, pa.int64()))


def files_frame(spark, data: Materialized):
    """``(file, path)``: one row, and one partition (so one task), per part."""
    rows = [(i, str(f)) for i, f in enumerate(data.files)]
    return spark.createDataFrame(
        spark.sparkContext.parallelize(rows, max(1, len(rows))), "file long, path string"
    )


def read_parts(spark, data: Materialized):
    """The parts as one DataFrame (conformed to ``data.schema``) plus ``_file``/``_row``."""
    schema = _with_position(data.schema)
    struct = spark_schema(schema)
    files = files_frame(spark, data)

    def read(batches):
        for batch in batches:
            for index, path in zip(
                batch["file"].to_pylist(), batch["path"].to_pylist(), strict=True
            ):
                table = conform(read_table(Path(path)), data.schema)
                n = table.num_rows
                table = table.append_column(FILE, pa.array(np.full(n, index, np.int64)))
                table = table.append_column(ROW, pa.array(np.arange(n, dtype=np.int64)))
                yield from table.to_batches()

    return files.mapInArrow(read, struct)


def _keys_frame(df, data: Materialized, fields: dict[str, pa.DataType], compute: Callable):
    """mapInArrow computing per-row keys: ``compute(table) -> {name: array}`` on top of
    the row's position and id. ``compute`` runs in the workers with the local math."""
    names = data.schema.names
    out = pa.schema([(FILE, pa.int64()), (ROW, pa.int64()), (ID, pa.string()), *fields.items()])

    def keys(batches):
        for batch in batches:
            table = pa.Table.from_batches([batch])
            rows = conform(table.select(names), data.schema)  # Spark types -> the parts'
            cols = {FILE: table[FILE], ROW: table[ROW], ID: rows[ID].cast(pa.string())}
            cols.update(compute(rows))
            yield from pa.table(cols).cast(out).to_batches()

    return df.mapInArrow(keys, spark_schema(out))


def materialise(df):
    """Compute ``df`` once and cut its lineage: a reliable checkpoint when the session
    has a checkpoint directory (``sc.setCheckpointDir``, advised on clusters: it
    survives a lost executor), else a local one (executor storage)."""
    if df.sparkSession.sparkContext.getCheckpointDir():
        return df.checkpoint(eager=True)
    return df.localCheckpoint(eager=True)


def spark_select(stage, df, data: Materialized):
    """``select``: score in the workers (DuckDB, as locally), rank with window functions."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from winnow.sql import connect, evaluate
    from winnow.stages.select import APPROX_TOKENS

    p = stage.params
    tokens = p.token_count or ("n_tokens" if "n_tokens" in data.schema.names else APPROX_TOKENS)
    exprs = {"score": p.by, "tokens": tokens, "stratum": p.stratify or "NULL"}

    def compute(table):
        keys = evaluate(connect(), table, exprs)
        return {
            "score": keys["score"].cast(pa.float64()),
            "tokens": keys["tokens"].cast(pa.float64()),
            "stratum": keys["stratum"].cast(pa.string()),
        }

    fields = {"score": pa.float64(), "tokens": pa.float64(), "stratum": pa.string()}
    keys = _keys_frame(df, data, fields, compute)
    score = F.col("score").asc_nulls_last() if p.ascending else F.col("score").desc_nulls_last()
    running = (
        Window.partitionBy("stratum")
        .orderBy(score, F.col(ID).asc())
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    stratum, everything = Window.partitionBy("stratum"), Window.partitionBy()
    tok = F.coalesce(F.col("tokens"), F.lit(0.0))
    rule = re.sub(r"(\w+)::DOUBLE", r"CAST(\1 AS DOUBLE)", stage._keep_rule())  # DuckDB cast
    decided = (
        keys.withColumn("rn", F.row_number().over(running))
        .withColumn("cum_tokens", F.sum(tok).over(running))
        .withColumn("cnt", F.count(F.lit(1)).over(stratum))
        .withColumn("stratum_tokens", F.sum(tok).over(stratum))
        .withColumn("total_cnt", F.count(F.lit(1)).over(everything))
        .withColumn("total_tokens", F.sum(tok).over(everything))
        .select(FILE, ROW, F.coalesce(F.expr(rule), F.lit(False)).alias("_keep"))
    )
    joined = df.join(decided, [FILE, ROW])
    cols = [F.col(c) for c in df.columns if c != REASON]
    reason = f"not_selected: below the {stage._budget()} by {p.by}"
    kept = joined.where("_keep").select(*cols)
    rejected = joined.where("NOT _keep").select(*cols, F.lit(reason).alias("_reason"))
    return kept, rejected, {}


def spark_exact_dedup(stage, df, data: Materialized):
    """``exact_dedup``: hash keys in the workers (the local math), group with windows."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from winnow.stages.dedup import _require

    p = stage.params
    _require(data, [ID, *(data.schema.names if p.sql else [p.column]), p.keep_column])

    def compute(table):
        hi, lo, null = stage._hashes(stage._keys(table))
        out = {"h1": pa.array(hi.view(np.int64), mask=null), "h2": pa.array(lo.view(np.int64))}
        return out

    keys = _keys_frame(df, data, {"h1": pa.int64(), "h2": pa.int64()}, compute)
    keys = materialise(keys)  # hashed once, not once per use (check, kept, rejected)
    _check_unique_ids(keys)
    if p.keep_column:
        keys = keys.join(df.select(FILE, ROW, F.col(p.keep_column).alias("_k")), [FILE, ROW])
    order = _keep_order(p.keep)
    single = F.when(F.col("h1").isNull(), F.struct(FILE, ROW))  # null keys: own group
    group = Window.partitionBy("h1", "h2", single)
    decided = keys.select(
        FILE,
        ROW,
        F.count(F.lit(1)).over(group).alias("_dup_count"),
        F.first(ID).over(group.orderBy(*order)).alias("_kept_id"),
        F.col(ID).alias("_id"),
    )
    joined = df.join(decided, [FILE, ROW])
    keep = F.col("_kept_id") == F.col("_id")
    kept = joined.where(keep).select(*_set_columns(df, {"dup_count": F.col("_dup_count")}))
    rejected = _rejected(df, joined.where(~keep), "exact_duplicate_of:", F.col("_kept_id"))
    return kept, rejected, {"exact_duplicates": None}  # None: the rejected row count


def _keep_order(keep: str) -> list:
    """The Spark twin of ``clusters.keep_order_sql`` over ``_k`` (the keep column)."""
    from pyspark.sql import functions as F

    k = F.col("_k")
    first = {
        "lowest_id": [],
        "highest_score": [k.desc_nulls_last()],
        "oldest": [k.asc_nulls_last()],
    }
    return first[keep] + [F.col(ID).asc()]


def _set_columns(df, added: dict) -> list:
    """``df``'s columns with ``added`` ones replaced in place or appended, as
    ``set_column`` does locally."""
    from pyspark.sql import functions as F

    cols = [added[c].alias(c) if c in added else F.col(c) for c in df.columns]
    return cols + [col.alias(name) for name, col in added.items() if name not in df.columns]


def _rejected(df, rows, prefix: str, kept_id):
    """The rejected rows with ``_reason`` = ``prefix`` + the kept row's id."""
    from pyspark.sql import functions as F

    reason = F.concat(F.lit(prefix), kept_id).alias("_reason")
    return rows.select(*[F.col(c) for c in df.columns if c != REASON], reason)


def spark_minhash_dedup(stage, df, data: Materialized):
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
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from winnow.kernels.minhash import band_keys
    from winnow.stages.dedup import _require, signature_bytes

    p = stage.params
    _require(data, [ID, p.column, p.keep_column])
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
    keys = materialise(_keys_frame(df, data, fields, compute).select("*", _node()))
    _check_unique_ids(keys)

    bucket = Window.partitionBy("band", "key")
    centre = F.min(F.struct(F.col(ID), F.col("_node"))).over(bucket)["_node"]
    members = keys.select("_node", ID, F.posexplode("_bands").alias("band", "key"))
    edges = members.select(F.col("_node").alias("a"), centre.alias("b")).where("a <> b").distinct()
    edges = materialise(edges)
    stats = {"near_duplicates": None, "candidate_edges": float(edges.count())}

    order = _keep_order(p.keep)
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
    kept = joined.where(keep).select(*_set_columns(df, added))
    rejected = _rejected(df, joined.where(~keep), "near_duplicate_of:", F.col("_kept_id"))
    return kept, rejected, stats


def _node():
    """A row's node number in ``spark_minhash_dedup``: its position."""
    from pyspark.sql import functions as F

    return (F.shiftleft(F.col(FILE), 32) + F.col(ROW)).alias("_node")


def _verify_payloads(stage, df, keys, nodes, data: Materialized):
    """``(_node, _value)`` for the ``nodes`` frame's nodes: what ``verify`` compares.
    ``signature``: the signature bytes (from the key frame); ``jaccard``: the text's
    sorted unique shingle hashes (``dedup.shingle_sets``, as the local stage)."""
    from pyspark.sql import functions as F

    from winnow.stages.dedup import shingle_sets

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
    from pyspark.sql import functions as F
    from pyspark.sql.types import BooleanType, StructField, StructType

    from winnow.kernels import clusters
    from winnow.stages.dedup import signature_rows

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
    from pyspark.sql import Window
    from pyspark.sql import functions as F

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


def connected_components(edges, max_rounds: int = 100):
    """Connected components of an undirected ``(a, b)`` long edge frame, by alternating
    large-star and small-star rounds (Kiveris et al., "Connected Components in
    MapReduce and Beyond", SoCC 2014): O(log n) rounds, each two shuffles of the
    edges. Returns ``(a, b)``: every non-minimal node ``a`` of a component once, with
    ``b`` the component's smallest node. Isolated nodes do not appear.

    Each round's edges are materialised (checkpointed): the convergence test reads
    them anyway, and it keeps the lineage (and plan analysis) from growing per round.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    a, b = F.col("a"), F.col("b")
    by_u = Window.partitionBy("u")
    for i in range(max_rounds):
        # Large star: link every larger neighbour of u to u's smallest neighbour (or u).
        both = edges.select(a.alias("u"), b.alias("v")).unionByName(
            edges.select(b.alias("u"), a.alias("v"))
        )
        large = (
            both.select("u", "v", F.least(F.min("v").over(by_u), F.col("u")).alias("m"))
            .where("v > u")
            .select(F.col("v").alias("a"), F.col("m").alias("b"))
            .distinct()
        )
        # Small star: link u and its smaller neighbours to the smallest of them.
        by_a = Window.partitionBy("a")
        small = large.select("a", "b", F.min("b").over(by_a).alias("m"))
        edges = (
            small.select(b.alias("a"), F.col("m").alias("b"))
            .where("a <> b")
            .unionByName(small.select("a", F.col("m").alias("b")))
            .distinct()
        )
        edges = materialise(edges)
        # Converged when the edges are stars: one edge per member, no centre is a member.
        roles = edges.select(a.alias("n"), F.lit(1).alias("member")).unionByName(
            edges.select(b.alias("n"), F.lit(0).alias("member"))
        )
        per_node = roles.groupBy("n").agg(F.sum("member").alias("m"), F.count("*").alias("all"))
        if per_node.where("m > 1 OR (m = 1 AND all > 1)").isEmpty():
            log.info("connected components: %d rounds", i + 1)
            return edges
    raise WinnowError(f"connected components did not converge in {max_rounds} rounds")


def _check_unique_ids(keys) -> None:
    dupes = keys.groupBy(ID).count().where("count > 1").orderBy(ID).limit(3).collect()
    if dupes:
        shown = ", ".join(repr(r[ID]) for r in dupes)
        raise errors.InputError(f"ids must be unique; repeated: {shown}")


# stage registry name -> fn(stage, df, data) -> (kept, rejected-with-_reason, stats);
# both frames keep the _file/_row position columns.
SPARK_BACKENDS: dict[str, Callable] = {
    "select": spark_select,
    "exact_dedup": spark_exact_dedup,
    "minhash_dedup": spark_minhash_dedup,
    "combine": spark_combine,
    "decompose": spark_decompose,  # writes_parts: fn(spark, stage, data, pass_dir) -> StageCount
}


def _arrow_target(df, base: pa.Schema) -> pa.Schema:
    """Arrow schema for a frame's columns: ``base``'s types where known, else Spark's."""
    from pyspark.sql.pandas.types import to_arrow_type

    fields = []
    for f in df.schema.fields:
        if f.name in (FILE, ROW):
            continue
        known = f.name in base.names and f.name != REASON
        fields.append(base.field(f.name) if known else pa.field(f.name, to_arrow_type(f.dataType)))
    return pa.schema(fields)


def write_parts(df, target: pa.Schema, writer: Callable[[int, pa.Table], None]) -> dict[int, dict]:
    """Write each input part's rows (in input order) from the executors with
    ``writer(index, table)``; returns ``{index: {"rows": n, "reasons": {...}}}``."""
    names = target.names

    def write(batches):
        pending: list[pa.Table] = []

        def flush():
            table = pa.concat_tables(pending).combine_chunks()
            index = table[FILE][0].as_py()
            table = conform(table, target)
            writer(index, table)
            reasons = count_reasons(table[REASON]) if REASON in names else {}
            pending.clear()
            return pa.record_batch(
                {"index": [index], "rows": [table.num_rows], "reasons": [json.dumps(reasons)]}
            )

        for batch in batches:
            table = pa.Table.from_batches([batch])
            files = table[FILE].to_numpy()
            cuts = np.flatnonzero(np.diff(files)) + 1
            for start, stop in zip([0, *cuts], [*cuts, len(files)], strict=True):
                piece = table.slice(start, stop - start)
                if pending and pending[0][FILE][0].as_py() != piece[FILE][0].as_py():
                    yield flush()
                pending.append(piece)
        if pending:
            yield flush()

    schema = "index long, rows long, reasons string"
    out = df.repartition(FILE).sortWithinPartitions(FILE, ROW).mapInArrow(write, schema)
    return {
        r["index"]: {"rows": r["rows"], "reasons": json.loads(r["reasons"])} for r in out.collect()
    }


# ------------------------------------------------------------------------ the runner


class SparkRunner(LocalRunner):
    """Execute a validated pipeline spec on Spark; same outputs as ``LocalRunner``."""

    def __init__(self, spec: PipelineSpec, spark=None, *, force: bool = False):
        super().__init__(spec, workers=1, force=force)
        self.spark = spark if spark is not None else get_session()

    def run(self, show_progress: bool = False) -> Ledger:
        return super().run(show_progress=show_progress)

    def _execute(self, tasks: list[MapTask]):
        """Run a map pass's pending tasks, one Spark task each; yield their markers."""
        if not tasks:
            return
        from pyspark import cloudpickle

        rows = [(i, cloudpickle.dumps(t)) for i, t in enumerate(tasks)]
        sc = self.spark.sparkContext
        frame = self.spark.createDataFrame(
            sc.parallelize(rows, len(rows)), "index long, task binary"
        )
        with unwrap_errors():
            out = frame.mapInArrow(_run_tasks, "index long, record string").collect()
        records = [json.loads(r["record"]) for r in sorted(out, key=lambda r: r["index"])]
        for record in records:
            if "error" in record:
                raise _error_class(record["type"])(record["error"])
        yield from records

    def _run_global_stage(self, stage, data: Materialized, pass_dir: Path, advance) -> StageCount:
        backend = SPARK_BACKENDS.get(stage.name)
        if backend is None:
            kind = stage.name or type(stage).__name__  # plugins may leave name unset
            log.warning(
                "stage %r (%s): no Spark backend yet; ran on the driver", stage.stage_id, kind
            )
            return super()._run_global_stage(stage, data, pass_dir, advance)
        if data.num_rows == 0:  # nothing to distribute; keeps the local empty-output layout
            return super()._run_global_stage(stage, data, pass_dir, advance)
        if getattr(backend, "writes_parts", False):  # it writes the stage's parts itself
            with unwrap_errors():
                count = backend(self.spark, stage, data, pass_dir)
            advance()
            return count
        with unwrap_errors():
            df = read_parts(self.spark, data)
            kept, rejected, stats = backend(stage, df, data)
            run_dir, sid = self.run_dir, stage.stage_id

            def write_kept(index: int, table: pa.Table) -> None:
                write_table(pass_dir / f"part-{index:05d}.arrow", table, durable=False)

            def write_rejected(index: int, table: pa.Table) -> None:
                _write_rejected(run_dir, sid, index, table)

            target = _arrow_target(kept, data.schema)
            kept_parts = write_parts(kept, target, write_kept)
            rejected = rejected.withColumnRenamed("_reason", REASON)
            rejected_parts = write_parts(
                rejected, _arrow_target(rejected, data.schema), write_rejected
            )
        for i in range(len(data.files)):  # every input part has an output part, as locally
            if i not in kept_parts:
                write_kept(i, target.empty_table())
        count = StageCount(rows_in=data.num_rows)
        count.kept = sum(p["rows"] for p in kept_parts.values())
        for part in rejected_parts.values():
            count.add(StageCount(rejected=part["reasons"]))
        count.stats = {k: count.rejected_total if v is None else v for k, v in stats.items()}
        advance()
        return count


def run_spark(
    spec: PipelineSpec, *, master: str | None = None, force: bool = False, progress: bool = False
) -> Ledger:
    """Run ``spec`` on Spark (``master`` as for ``get_session``) and return the ledger."""
    return SparkRunner(spec, get_session(master), force=force).run(show_progress=progress)


PACK_ARCHIVE = "winnow-env.tar.gz"


def submit_command(pipeline: str, master: str, *, pack: bool = False) -> str:
    """The ``spark-submit`` line for ``pipeline``. Without ``pack`` every node needs
    this Python, with winnow, at this path; with ``pack`` this virtualenv is packed
    into ``winnow-env.tar.gz`` (venv-pack) and shipped to the executors."""
    import importlib.util
    import shlex

    script = str(Path(__file__).resolve())
    pipeline = str(Path(pipeline).resolve())  # the driver may not start in this folder
    if not pack:
        conf = ["--conf", f"spark.pyspark.python={sys.executable}"]
        return shlex.join(["spark-submit", "--master", master, *conf, script, pipeline])
    if importlib.util.find_spec("venv_pack") is None:
        raise WinnowError("--pack needs venv-pack, which is not installed: pip install venv-pack")
    import venv_pack

    try:  # an editable install packs only a link to this tree: `pip install .` first
        venv_pack.pack(prefix=sys.prefix, output=PACK_ARCHIVE, force=True, verbose=False)
    except venv_pack.VenvPackException as exc:
        raise WinnowError(f"--pack: venv-pack failed: {exc}") from None
    conf = [
        "--archives",
        f"{PACK_ARCHIVE}#environment",
        "--conf",
        "spark.pyspark.python=./environment/bin/python",
        "--conf",
        f"spark.pyspark.driver.python={sys.executable}",
    ]
    return shlex.join(["spark-submit", "--master", master, *conf, script, pipeline])


def main(argv: list[str] | None = None) -> int:
    import argparse

    from winnow.config import load_pipeline

    parser = argparse.ArgumentParser(
        prog="winnow.runners.spark", description=__doc__.split("\n")[0]
    )
    parser.add_argument("pipeline")
    parser.add_argument(
        "--master", help="Spark master URL (default: spark-submit's, else local[*])"
    )
    parser.add_argument("--force", action="store_true", help="recompute completed stages")
    args = parser.parse_args(argv)
    try:
        ledger = run_spark(load_pipeline(args.pipeline), master=args.master, force=args.force)
    except WinnowError as exc:
        print(f"winnow: error: {exc}", file=sys.stderr)
        return 2
    from rich.console import Console

    Console().print(ledger.render())
    return 0


if __name__ == "__main__":
    # Re-import by module name so the functions Spark ships are pickled by reference.
    from winnow.runners.spark import main as _main

    sys.exit(_main())
