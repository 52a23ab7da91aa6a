"""The Spark backend of ``structure.CharCount``: a plugin ships its own."""

from pyspark.sql import functions as F

from winnow.spark.frames import frame_backend, set_columns

CALLS = []  # the driver appends here, so a test can tell the backend ran


def _decide(stage, df, data):
    CALLS.append(stage.stage_id)
    added = {stage.params.column: F.char_length(F.col("text")).cast("long")}
    kept = df.select(*set_columns(df, added))
    return kept, df.limit(0).withColumn("_reason", F.lit("")), {}


char_count = frame_backend(_decide)
