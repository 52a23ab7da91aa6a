"""DataFrame helpers the Spark backends share.

Global-stage backends read the parent parts into one DataFrame with each row's
position (``_file``: the part's index, ``_row``: the row within it), compute per-row
keys in the workers with the local maths (``keys_frame``), decide with DataFrame
operations, and write their outputs from the executors, one part per input part,
rows in input order: the local layout (``write_parts``, ``frame_backend``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_type

from winnow import errors
from winnow.io.writers import read_table
from winnow.ledger import StageCount, count_reasons
from winnow.runners.layout import write_part, write_rejected
from winnow.stages.base import Materialized
from winnow.table import ID, REASON, conform

FILE, ROW = "_file", "_row"  # a row's position: input part index, row within it


def spark_schema(schema: pa.Schema):
    """Arrow schema -> Spark StructType; an unsupported column type is a user error."""

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


def keys_frame(df, data: Materialized, fields: dict[str, pa.DataType], compute: Callable):
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


def keep_order(keep: str) -> list:
    """The Spark twin of ``clusters.keep_order_sql`` over ``_k`` (the keep column)."""

    k = F.col("_k")
    first = {
        "lowest_id": [],
        "highest_score": [k.desc_nulls_last()],
        "oldest": [k.asc_nulls_last()],
    }
    return first[keep] + [F.col(ID).asc()]


def set_columns(df, added: dict) -> list:
    """``df``'s columns with ``added`` ones replaced in place or appended, as
    ``set_column`` does locally."""

    cols = [added[c].alias(c) if c in added else F.col(c) for c in df.columns]
    return cols + [col.alias(name) for name, col in added.items() if name not in df.columns]


def rejected_rows(df, rows, prefix: str, kept_id):
    """The rejected rows with ``_reason`` = ``prefix`` + the kept row's id."""

    reason = F.concat(F.lit(prefix), kept_id).alias("_reason")
    return rows.select(*[F.col(c) for c in df.columns if c != REASON], reason)


def check_unique_ids(keys) -> None:
    dupes = keys.groupBy(ID).count().where("count > 1").orderBy(ID).limit(3).collect()
    if dupes:
        shown = ", ".join(repr(r[ID]) for r in dupes)
        raise errors.InputError(f"ids must be unique; repeated: {shown}")


def arrow_target(df, base: pa.Schema) -> pa.Schema:
    """Arrow schema for a frame's columns: ``base``'s types where known, else Spark's."""

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


def frame_backend(decide: Callable) -> Callable:
    """A Spark backend (``winnow.spark.backends``) from ``decide(stage, df, data) ->
    (kept, rejected, stats)``: frames with the ``_file``/``_row`` columns, rejected rows
    with ``_reason``, a stat of ``None`` meaning the rejected row count. It reads the
    parts, decides, and writes one kept part per input part, as locally."""

    def run(spark, stage, data: Materialized, folder: Path) -> StageCount:
        df = read_parts(spark, data)
        kept, rejected, stats = decide(stage, df, data)

        def write_kept(index: int, table: pa.Table) -> None:
            write_part(folder, index, table)

        def write_reject(index: int, table: pa.Table) -> None:
            write_rejected(stage.run_dir, stage.stage_id, index, table)

        target = arrow_target(kept, data.schema)
        kept_parts = write_parts(kept, target, write_kept)
        rejected = rejected.withColumnRenamed("_reason", REASON)
        rejected_parts = write_parts(rejected, arrow_target(rejected, data.schema), write_reject)
        for i in range(len(data.files)):  # every input part has an output part, as locally
            if i not in kept_parts:
                write_kept(i, target.empty_table())
        count = StageCount(rows_in=data.num_rows)
        count.kept = sum(p["rows"] for p in kept_parts.values())
        for part in rejected_parts.values():
            count.add(StageCount(rejected=part["reasons"]))
        count.stats = {k: count.rejected_total if v is None else v for k, v in stats.items()}
        return count

    return run
