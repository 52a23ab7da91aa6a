"""``exact_dedup`` on Spark: hash keys in the workers (the local maths), group with windows."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from pyspark.sql import Window
from pyspark.sql import functions as F

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
from winnow.table import ID


def decide(stage, df, data: Materialized):
    """``exact_dedup``: hash keys in the workers (the local math), group with windows."""

    p = stage.params
    require_columns(data, [ID, *(data.schema.names if p.sql else [p.column]), p.keep_column])

    def compute(table):
        hi, lo, null = stage.hashes(stage.key_column(table))
        out = {"h1": pa.array(hi.view(np.int64), mask=null), "h2": pa.array(lo.view(np.int64))}
        return out

    keys = keys_frame(df, data, {"h1": pa.int64(), "h2": pa.int64()}, compute)
    keys = materialise(keys)  # hashed once, not once per use (check, kept, rejected)
    check_unique_ids(keys)
    if p.keep_column:
        keys = keys.join(df.select(FILE, ROW, F.col(p.keep_column).alias("_k")), [FILE, ROW])
    order = keep_order(p.keep)
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
    kept = joined.where(keep).select(*set_columns(df, {"dup_count": F.col("_dup_count")}))
    rejected = rejected_rows(df, joined.where(~keep), "exact_duplicate_of:", F.col("_kept_id"))
    return kept, rejected, {"exact_duplicates": None}  # None: the rejected row count


run = frame_backend(decide)
