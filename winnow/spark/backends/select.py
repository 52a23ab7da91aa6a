"""``select`` on Spark: score in the workers (DuckDB, as locally), rank with windows."""

from __future__ import annotations

import re

import pyarrow as pa
from pyspark.sql import Window
from pyspark.sql import functions as F

from winnow.spark.frames import FILE, ROW, frame_backend, keys_frame
from winnow.sql import connect, evaluate
from winnow.stages.base import Materialized
from winnow.stages.select import APPROX_TOKENS
from winnow.table import ID, REASON


def decide(stage, df, data: Materialized):
    """``select``: score in the workers (DuckDB, as locally), rank with window functions."""

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
    keys = keys_frame(df, data, fields, compute)
    score = F.col("score").asc_nulls_last() if p.ascending else F.col("score").desc_nulls_last()
    running = (
        Window.partitionBy("stratum")
        .orderBy(score, F.col(ID).asc())
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    stratum, everything = Window.partitionBy("stratum"), Window.partitionBy()
    tok = F.coalesce(F.col("tokens"), F.lit(0.0))
    rule = re.sub(r"(\w+)::DOUBLE", r"CAST(\1 AS DOUBLE)", stage.keep_rule())  # DuckDB cast
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
    reason = f"not_selected: below the {stage.budget()} by {p.by}"
    kept = joined.where("_keep").select(*cols)
    rejected = joined.where("NOT _keep").select(*cols, F.lit(reason).alias("_reason"))
    return kept, rejected, {}


run = frame_backend(decide)
