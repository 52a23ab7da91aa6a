"""The Spark backend of ``combine``: the local stage's fit and scores, bit for bit.

- values: each weighted column becomes float64 in the workers with the local
  conversion (``score_values``: booleans 0/1, nulls NaN), next to the row's position;
- ``zscore``: per-partition exact sums (:func:`winnow.scorers.combine.exact_sum`,
  shipped as fractions) added on the driver: the exactly rounded mean, then a second
  pass for the exact sum of squared deviations. Neither depends on how rows are
  split or ordered, so the fit is the local one;
- ``percentile``: per distinct finite value, the count of values strictly below it
  (a running sum over the value counts: one window over all distinct values, in
  one partition) and up to it; the local mid-rank formula then runs in the workers;
- the weighted sum runs in the workers with the local functions, in ``weights`` order.

The output keeps every row (none is rejected), with ``output`` set in place or
appended as ``set_column`` does, and ``combine-<id>.json`` is the local one.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pyarrow as pa
from pyspark.sql import Window
from pyspark.sql import functions as F

from winnow.errors import WinnowError
from winnow.scorers.combine import (
    Normalizer,
    exact_mean,
    exact_sum,
    mid_rank,
    squared_deviations,
    weighted_sum,
)
from winnow.spark.frames import FILE, ROW, frame_backend, materialise, set_columns, spark_schema
from winnow.stages.base import Materialized
from winnow.stages.combine import score_values
from winnow.table import REASON, conform

SCORE = "_score"


def _exact_sums(vals, fields: list[str], term) -> dict[str, tuple[int, Fraction]]:
    """Per field: (finite count, exact sum of ``term(field, finite values)``), from
    per-partition sums added on the driver."""

    out = pa.schema([("field", pa.string()), ("n", pa.int64()), ("sum", pa.string())])

    def partials(batches):
        n = dict.fromkeys(fields, 0)
        total = dict.fromkeys(fields, Fraction(0))
        for batch in batches:
            for f in fields:
                x = batch[f].to_numpy(zero_copy_only=False)
                x = x[np.isfinite(x)]
                n[f] += len(x)
                total[f] += exact_sum(term(f, x))
        cols = {
            "field": fields,
            "n": [n[f] for f in fields],
            "sum": [str(total[f]) for f in fields],
        }
        yield pa.record_batch(cols, schema=out)

    sums = {f: (0, Fraction(0)) for f in fields}
    for r in vals.mapInArrow(partials, spark_schema(out)).collect():
        n, total = sums[r["field"]]
        sums[r["field"]] = (n + r["n"], total + Fraction(r["sum"]))
    return sums


def _ranks(vals, field: str, index: int):
    """``vals`` plus, for finite values of ``field``, how many finite values are below
    it and up to it (null for the rest); and how many values are finite."""

    x = F.col(field)
    finite = vals.select(x.alias("_x")).where(F.abs(F.col("_x")) < float("inf"))  # not NaN
    counts = finite.groupBy("_x").agg(F.count(F.lit(1)).alias("_n"))
    before = Window.orderBy("_x").rowsBetween(Window.unboundedPreceding, -1)
    below = F.coalesce(F.sum("_n").over(before), F.lit(0)).cast("long")
    ranks = counts.select("_x", below.alias(f"_below{index}"), "_n")
    ranks = materialise(ranks)
    total = ranks.agg(F.sum("_n")).first()[0] or 0
    upto = (F.col(f"_below{index}") + F.col("_n")).alias(f"_upto{index}")
    ranks = ranks.select(F.col("_x").alias(f"_key{index}"), f"_below{index}", upto)
    joined = vals.join(ranks, x == F.col(f"_key{index}"), "left").drop(f"_key{index}")
    return joined, int(total)


def decide(stage, df, data: Materialized):
    """``combine``: see the module docstring."""

    weights = stage.weights(data.schema)
    output = stage.params.output
    if output in data.schema.names and data.schema.field(output).type != pa.float64():
        # the runner writes known columns with their input type; locally it becomes float64
        raise WinnowError(
            f"{stage.stage_id}: on Spark, combine output {output!r} must be a new column or a "
            f"float64 one (it is {data.schema.field(output).type}); choose another name"
        )
    columns = list(weights)
    field = {c: f"_v{i}" for i, c in enumerate(columns)}
    method = {c: stage.method(c) for c in columns}
    names = data.schema.names
    schema = pa.schema([(FILE, pa.int64()), (ROW, pa.int64())])
    for c in columns:
        schema = schema.append(pa.field(field[c], pa.float64()))

    def values(batches):
        for batch in batches:
            table = pa.Table.from_batches([batch])
            rows = conform(table.select(names), data.schema)  # Spark types -> the parts'
            cols = {FILE: table[FILE], ROW: table[ROW]}
            cols.update({field[c]: score_values(rows[c]) for c in columns})
            yield from pa.table(cols).cast(schema).to_batches()

    vals = materialise(df.mapInArrow(values, spark_schema(schema)))

    fitted: dict[str, Normalizer] = {c: Normalizer(method[c]) for c in columns}
    zscore = [c for c in columns if method[c] == "zscore"]
    if zscore:
        sums = _exact_sums(vals, [field[c] for c in zscore], lambda f, x: x)
        means = {field[c]: exact_mean(sums[field[c]][1], sums[field[c]][0]) for c in zscore}
        squares = _exact_sums(vals, list(means), lambda f, x: squared_deviations(x, means[f]))
        for c in zscore:
            n, total = squares[field[c]]
            std = math.sqrt(exact_mean(total, n))
            fitted[c] = Normalizer("zscore", means[field[c]], std, count=n)
    counts: dict[str, int] = {}
    for i, c in enumerate(columns):
        if method[c] == "percentile":
            vals, counts[c] = _ranks(vals, field[c], i)
            fitted[c] = Normalizer("percentile", count=counts[c])
    stage.write_summary(weights, fitted)

    out = pa.schema([(FILE, pa.int64()), (ROW, pa.int64()), (SCORE, pa.float64())])

    def score(batches):
        for batch in batches:
            normalised = {}
            for i, c in enumerate(columns):
                x = batch[field[c]].to_numpy(zero_copy_only=False)
                if method[c] != "percentile":
                    normalised[c] = fitted[c].transform(x)
                    continue
                below = batch[f"_below{i}"].fill_null(0).to_numpy(zero_copy_only=False)
                upto = batch[f"_upto{i}"].fill_null(0).to_numpy(zero_copy_only=False)
                ranked = mid_rank(below, upto, max(counts[c], 1))
                ranked[~np.isfinite(x)] = 0.0
                normalised[c] = ranked
            total = pa.array(weighted_sum(normalised, weights), pa.float64())
            yield pa.record_batch([batch[FILE], batch[ROW], total], schema=out)

    scores = vals.mapInArrow(score, spark_schema(out))
    joined = df.join(scores, [FILE, ROW])
    kept = joined.select(*set_columns(df, {output: F.col(SCORE)}))
    cols = [F.col(c) for c in df.columns if c != REASON]
    rejected = df.where(F.lit(False)).select(*cols, F.lit("").alias("_reason"))
    return kept, rejected, {}


run = frame_backend(decide)
