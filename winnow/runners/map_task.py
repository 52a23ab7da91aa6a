"""One unit of a map pass, run in a worker process (the local pool or a Spark task).

A task reads its rows (an input chunk or an upstream part file), runs the pass's
fused stage chain, and writes one part file, the rows each stage rejected (and, for
an input chunk, its ids and lines for the duplicate check), and a small JSON marker
last, which records each file's size and xxh3-128. Stages are built and ``setup``
once per worker process and fed in slices of their ``resources.batch_rows``.
Everything a task writes depends on its inputs only, so a task that is retried
rewrites the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from winnow.config import InputSpec
from winnow.errors import LedgerError, WinnowError
from winnow.files import write_json_atomic
from winnow.io.chunks import Chunk
from winnow.io.id_check import write_ids
from winnow.io.readers import read_chunk
from winnow.io.writers import read_table
from winnow.ledger import StageCount, count_reasons
from winnow.pipeline import StageRecipe
from winnow.runners.layout import (
    READ_STAGE,
    file_records,
    marker_path,
    write_part,
    write_rejected,
)
from winnow.stages.base import MapStage, Output
from winnow.table import ID, REASON


@dataclass(frozen=True)
class MapTask:
    """One unit of a map pass; picklable so it can go to a worker process."""

    pass_dir: Path
    run_dir: Path
    pass_hash: str
    index: int
    source: Chunk | Path  # an input chunk, or an upstream part file
    input_spec: InputSpec
    recipes: tuple[StageRecipe, ...]


_STAGE_CACHE: dict[tuple[str, str], MapStage] = {}


def _stages_for(task: MapTask) -> list[MapStage]:
    """Build (and ``setup``) each stage once per worker process."""
    out = []
    for recipe in task.recipes:
        key = (recipe.stage_id, task.pass_hash)
        if key not in _STAGE_CACHE:
            stage = recipe.build(task.run_dir)
            stage.setup()
            _STAGE_CACHE[key] = stage
        out.append(_STAGE_CACHE[key])
    return out


def count_output(
    stage_id: str, rows_in: int, out: Output, where: str, check: bool = True
) -> StageCount:
    """The ledger count of one stage output; ``check`` asserts in + created = kept + rejected."""
    rejected = out.rejected
    if rejected is not None and rejected.num_rows and REASON not in rejected.column_names:
        raise LedgerError(f"stage {stage_id!r}{where}: rejected rows carry no 'reason' column")
    count = StageCount(
        rows_in=rows_in,
        kept=out.kept.num_rows,
        created=out.created,
        rejected=count_reasons(rejected.column(REASON)) if rejected is not None else {},
        stats=dict(out.stats),
    )
    if check:
        count.check(stage_id, where)
    return count


def process_in_batches(stage: MapStage, table: pa.Table) -> Output:
    """``stage.process`` over slices of ``resources.batch_rows`` rows (the whole table
    when unset), joined back in order; stats and created rows are summed."""
    size = stage.resources.batch_rows
    if not size or table.num_rows <= size:
        return stage.process(table)
    outs = [stage.process(table.slice(i, size)) for i in range(0, table.num_rows, size)]
    rejected = [o.rejected for o in outs if o.rejected is not None and o.rejected.num_rows]
    stats: dict[str, float] = {}
    for o in outs:
        for k, v in o.stats.items():
            stats[k] = stats.get(k, 0) + v
    return Output(
        kept=pa.concat_tables([o.kept for o in outs], promote_options="permissive"),
        rejected=pa.concat_tables(rejected, promote_options="permissive") if rejected else None,
        created=sum(o.created for o in outs),
        stats=stats,
    )


def run_map_task(task: MapTask) -> dict:
    """Read one unit, run the fused chain, write part + rejected + marker."""
    counts: dict[str, StageCount] = {}
    written: list[Path] = []
    if isinstance(task.source, Chunk):
        result = read_chunk(task.source, task.input_spec)
        table = result.table
        rows_in = table.num_rows + result.rejected.num_rows
        out = Output(table, result.rejected)
        counts[READ_STAGE] = count_output(READ_STAGE, rows_in, out, f" ({task.source.path})")
        if result.rejected.num_rows:
            written.append(write_rejected(task.run_dir, READ_STAGE, task.index, result.rejected))
        if task.input_spec.duplicate_ids == "fail":
            written.append(write_ids(task.pass_dir, task.index, table.column(ID), result.lines))
    else:
        table = read_table(task.source)
    for stage in _stages_for(task):
        try:
            out = process_in_batches(stage, table)
        except WinnowError as exc:
            raise WinnowError(f"stage {stage.stage_id!r}: {exc}") from None
        where = f" (part {task.index})"
        counts[stage.stage_id] = count_output(stage.stage_id, table.num_rows, out, where)
        if out.rejected is not None and out.rejected.num_rows:
            written.append(write_rejected(task.run_dir, stage.stage_id, task.index, out.rejected))
        table = out.kept
    written.append(write_part(task.pass_dir, task.index, table))
    record = {"hash": task.pass_hash, "rows": table.num_rows}
    record["counts"] = {sid: c.to_json() for sid, c in counts.items()}
    record["files"] = file_records(task.run_dir, written)
    write_json_atomic(marker_path(task.pass_dir, task.index), record)
    return record
