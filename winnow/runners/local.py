"""The local runner: a process pool over input chunks, streaming and resumable.

Map passes run one task per input chunk (or per upstream part file); each task
reads its rows, runs the fused stage chain and writes one part file, the rows each
stage rejected, and a small JSON marker last. A re-run skips every part whose
marker carries the same pass hash, so ``kill -9`` followed by a re-run finishes
with the same bytes as an uninterrupted run. Part boundaries depend only on the
input and ``chunk_rows``, never on the worker count, and the final shards are cut
from the concatenated stream, so output is byte-identical for any worker count.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from winnow.config import InputSpec, PipelineSpec
from winnow.errors import LedgerError, WinnowError
from winnow.io.chunks import Chunk
from winnow.io.discovery import plan_chunks
from winnow.io.readers import read_chunk
from winnow.io.writers import ShardWriter, ipc_rows, read_table, write_table
from winnow.ledger import Ledger, StageCount, count_reasons
from winnow.plan import Pass, Plan
from winnow.runners.common import (
    READ_STAGE,
    StageRecipe,
    digest,
    ledger_parents,
    make_plan,
    package_versions,
    read_json,
    reset_dir,
    write_json_atomic,
)
from winnow.stages.base import Materialized, Output
from winnow.table import ID, REASON, STAGE, TEXT, conform, unify_schemas


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


_STAGE_CACHE: dict[tuple[str, str], object] = {}


def _stages_for(task: MapTask) -> list:
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


def _write_rejected(run_dir: Path, stage_id: str, index: int, rejected: pa.Table) -> None:
    folder = run_dir / "rejected" / stage_id
    folder.mkdir(parents=True, exist_ok=True)
    rejected = rejected.append_column(STAGE, pa.array([stage_id] * rejected.num_rows, pa.string()))
    write_table(folder / f"part-{index:05d}.arrow", rejected, durable=False)


def _count(stage_id: str, rows_in: int, out: Output, where: str, check: bool = True) -> StageCount:
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


def run_map_task(task: MapTask) -> dict:
    """Read one unit, run the fused chain, write part + rejected + marker."""
    marker = task.pass_dir / f"part-{task.index:05d}.json"
    counts: dict[str, StageCount] = {}
    if isinstance(task.source, Chunk):
        result = read_chunk(task.source, task.input_spec)
        table = result.table
        out = Output(table, result.rejected)
        rows_in = table.num_rows + result.rejected.num_rows
        counts[READ_STAGE] = _count(READ_STAGE, rows_in, out, f" ({task.source.path})")
        if result.rejected.num_rows:
            _write_rejected(task.run_dir, READ_STAGE, task.index, result.rejected)
    else:
        table = read_table(task.source)
    for stage in _stages_for(task):
        try:
            out = stage.process(table)
        except WinnowError as exc:
            raise WinnowError(f"stage {stage.stage_id!r}: {exc}") from None
        where = f" (part {task.index})"
        counts[stage.stage_id] = _count(stage.stage_id, table.num_rows, out, where)
        if out.rejected is not None and out.rejected.num_rows:
            _write_rejected(task.run_dir, stage.stage_id, task.index, out.rejected)
        table = out.kept
    write_table(task.pass_dir / f"part-{task.index:05d}.arrow", table, durable=False)
    record = {"hash": task.pass_hash, "rows": table.num_rows}
    record["counts"] = {sid: c.to_json() for sid, c in counts.items()}
    write_json_atomic(marker, record)
    return record


def _init_worker() -> None:
    """The pool already uses every core: keep libraries in a worker to one thread."""
    for var in ("RAYON_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"


def _pass_files(run_dir: Path, pass_id: str) -> list[Path]:
    return sorted((run_dir / "stages" / pass_id).glob("part-*.arrow"))


class LocalRunner:
    """Execute a validated pipeline spec on this machine."""

    def __init__(self, spec: PipelineSpec, *, workers: int | None = None, force: bool = False):
        self.spec = spec
        self.run_dir = Path(spec.output.dir)
        self.plan: Plan
        self.plan, self.recipes = make_plan(spec)
        w = workers if workers is not None else spec.runner.workers
        self.workers = (os.cpu_count() or 1) if w == "auto" else max(1, int(w))
        self.force = force
        self.hashes: dict[str, str] = {}

    # -- hashing -------------------------------------------------------------------
    def _pass_hash(self, p: Pass, chunks: list[Chunk] | None) -> str:
        parts = {
            "stages": [self.recipes[s].__dict__ for s in p.stage_ids],
            "parents": [self.hashes.get(x, x) for x in p.parents],
            "chunk_rows": self.spec.runner.chunk_rows,
        }
        if chunks is not None:
            parts["input"] = self.spec.input.model_dump(mode="json")
            parts["chunks"] = [(c.path, c.fmt, c.start, c.stop, _stat(c.path)) for c in chunks]
        return digest(parts)

    def _prepare_pass_dir(self, p: Pass, pass_hash: str) -> tuple[Path, bool]:
        """Return (dir, done); wipe stale output when the hash changed or --force."""
        pass_dir = self.run_dir / "stages" / p.id
        success = pass_dir / "_SUCCESS"
        if not self.force and success.exists() and read_json(success)["hash"] == pass_hash:
            return pass_dir, True
        hash_file = pass_dir / "_HASH"
        stale = self.force or not hash_file.exists() or hash_file.read_text() != pass_hash
        if stale or p.kind == "global":
            reset_dir(pass_dir)
            for sid in p.stage_ids + ([READ_STAGE] if p.reads_input else []):
                reset_dir(self.run_dir / "rejected" / sid)
            hash_file.write_text(pass_hash)
        return pass_dir, False

    # -- passes --------------------------------------------------------------------
    def _run_map_pass(self, p: Pass, progress) -> dict[str, StageCount]:
        if p.reads_input:
            sources: list = plan_chunks(self.spec.input, self.spec.runner.chunk_rows)
            pass_hash = self._pass_hash(p, sources)
        else:
            sources = [f for parent in p.parents for f in _pass_files(self.run_dir, parent)]
            pass_hash = self._pass_hash(p, None)
        self.hashes[p.id] = pass_hash
        pass_dir, done = self._prepare_pass_dir(p, pass_hash)
        if done:
            return _load_counts(pass_dir)
        recipes = tuple(self.recipes[s] for s in p.stage_ids)
        tasks = [
            MapTask(pass_dir, self.run_dir, pass_hash, i, src, self.spec.input, recipes)
            for i, src in enumerate(sources)
        ]
        todo = [t for t in tasks if not _part_done(t)]
        bar = progress.add_task(f"{p.id} (map)", total=len(tasks), completed=len(tasks) - len(todo))
        for _ in self._execute(todo):
            progress.advance(bar)
        counts: dict[str, StageCount] = {}
        for t in tasks:
            record = read_json(pass_dir / f"part-{t.index:05d}.json")
            for sid, c in record["counts"].items():
                counts.setdefault(sid, StageCount()).add(StageCount.from_json(c))
        for sid in [READ_STAGE] * p.reads_input + p.stage_ids:
            counts.setdefault(sid, StageCount())
        write_json_atomic(pass_dir / "_SUCCESS", _success(pass_hash, counts))
        return counts

    def _execute(self, tasks: list[MapTask]):
        if self.workers == 1 or len(tasks) <= 1:
            for t in tasks:
                yield run_map_task(t)
            return
        ctx = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_worker) as pool:
            yield from pool.map(run_map_task, tasks)

    def _run_global_pass(self, p: Pass, progress) -> dict[str, StageCount]:
        pass_hash = self._pass_hash(p, None)
        self.hashes[p.id] = pass_hash
        pass_dir, done = self._prepare_pass_dir(p, pass_hash)
        if done:
            return _load_counts(pass_dir)
        files = [f for parent in p.parents for f in _pass_files(self.run_dir, parent)]
        data = Materialized(files)
        stage = self.recipes[p.id].build(self.run_dir)
        bar = progress.add_task(f"{p.id} (global)", total=None)
        workdir = pass_dir / "work"
        workdir.mkdir()
        try:
            count = self._run_global_stage(stage, data, pass_dir, lambda: progress.advance(bar))
        except WinnowError as exc:
            raise WinnowError(f"stage {p.id!r}: {exc}") from None
        if not any(pass_dir.glob("part-*.arrow")):
            write_table(pass_dir / "part-00000.arrow", data.schema.empty_table())
        count.check(p.id)
        progress.update(bar, total=1, completed=1)
        counts = {p.id: count}
        write_json_atomic(pass_dir / "_SUCCESS", _success(pass_hash, counts))
        return counts

    def _run_global_stage(self, stage, data: Materialized, pass_dir: Path, advance) -> StageCount:
        """Run ``stage.run`` here; write its parts and rejected rows; return its count."""
        count = StageCount(rows_in=data.num_rows)
        for i, out in enumerate(stage.run(data, pass_dir / "work")):
            count.add(_count(stage.stage_id, 0, out, f" (output {i})", check=False))
            write_table(pass_dir / f"part-{i:05d}.arrow", out.kept, durable=False)
            if out.rejected is not None and out.rejected.num_rows:
                _write_rejected(self.run_dir, stage.stage_id, i, out.rejected)
            advance()
        return count

    # -- the whole run -------------------------------------------------------------
    def run(self, show_progress: bool = True) -> Ledger:
        from rich.progress import Progress

        self.run_dir.mkdir(parents=True, exist_ok=True)
        counts: dict[str, StageCount] = {}
        enabled = show_progress and self.spec.runner.progress
        with Progress(disable=not enabled, transient=False) as progress:
            for p in self.plan.passes:
                run_pass = self._run_map_pass if p.kind == "map" else self._run_global_pass
                counts.update(run_pass(p, progress))
        outputs = self._write_outputs()
        self._check_files(counts)
        order = [READ_STAGE] + [s.id for s in self.spec.stages]
        ledger = Ledger(
            stages={sid: counts[sid] for sid in order},
            parents=ledger_parents(self.spec),
            input_rows=counts[READ_STAGE].rows_in,
            output_rows=sum(o["rows"] for o in outputs.values()),
            outputs={sink: o["rows"] for sink, o in outputs.items()},
        )
        ledger.reconcile()
        write_json_atomic(self.run_dir / "ledger.json", ledger.to_json())
        write_json_atomic(self.run_dir / "manifest.json", self._manifest(outputs, ledger))
        return ledger

    def _write_outputs(self) -> dict[str, dict]:
        """Cut each sink's parts into final shards under ``data/``."""
        sinks = self.plan.sinks
        outputs = {}
        for sink in sinks:
            target = self.run_dir / "data" / (sink.id if len(sinks) > 1 else "")
            files = _pass_files(self.run_dir, sink.id)
            schema = unify_schemas([pa.ipc.open_file(str(f)).schema for f in files])
            if not schema.names:
                schema = pa.schema([(ID, pa.string()), (TEXT, pa.string())])
            reset_dir(target)
            shards = self._link_parts(files, schema, target)
            if shards is None:
                out = self.spec.output
                writer = ShardWriter(target, out.format, out.shard_rows, out.shard_bytes)
                for f in files:
                    writer.write(conform(read_table(f), schema))
                shards = writer.close()
            outputs[sink.id] = {
                "dir": str(target.relative_to(self.run_dir)),
                "rows": sum(s["rows"] for s in shards),
                "bytes": sum(s["bytes"] for s in shards),
                "shards": shards,
                "schema": schema.to_string(show_schema_metadata=False).splitlines(),
            }
        return outputs

    def _link_parts(self, files: list[Path], schema: pa.Schema, target: Path) -> list | None:
        """Publish the sink's parts as shards without copying them (hard links), when
        the output is Arrow and every part already fits the shard limits and schema.
        Returns None when the stream must be re-cut by ``ShardWriter`` instead."""
        out = self.spec.output
        if out.format != "arrow":
            return None
        parts = []
        for f in files:
            rows, size = ipc_rows(f), f.stat().st_size
            same = pa.ipc.open_file(str(f)).schema.equals(schema)
            if not same or rows > out.shard_rows or size > out.shard_bytes:
                return None
            parts.append((f, rows, size))
        nonempty = [p for p in parts if p[1]] or parts[:1]
        shards = []
        for i, (f, rows, size) in enumerate(nonempty):
            name = f"shard-{i:05d}.arrow"
            os.link(f, target / name)
            shards.append({"file": name, "rows": rows, "bytes": size})
        return shards

    def _check_files(self, counts: dict[str, StageCount]) -> None:
        """Rows on disk must match the counts: nothing silently lost between stages."""
        for p in self.plan.passes:
            rows = sum(ipc_rows(f) for f in _pass_files(self.run_dir, p.id))
            if rows != counts[p.id].kept:
                raise LedgerError(f"pass {p.id!r}: {rows} rows on disk, {counts[p.id].kept} kept")
        for sid, c in counts.items():
            files = sorted((self.run_dir / "rejected" / sid).glob("part-*.arrow"))
            rows = sum(ipc_rows(f) for f in files)
            if rows != c.rejected_total:
                raise LedgerError(f"stage {sid!r}: {rows} rejected rows on disk, counted {c}")

    def _manifest(self, outputs: dict, ledger: Ledger) -> dict:
        return {
            "name": self.spec.name,
            "seed": self.spec.seed,
            "config_hash": digest(self.spec.model_dump(mode="json")),
            "config": self.spec.model_dump(mode="json"),
            "pass_hashes": self.hashes,
            "outputs": outputs,
            "stages": {sid: c.to_json() for sid, c in ledger.stages.items()},
            "versions": package_versions(),
        }


def _stat(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _part_done(task: MapTask) -> bool:
    marker = task.pass_dir / f"part-{task.index:05d}.json"
    return marker.exists() and read_json(marker)["hash"] == task.pass_hash


def _success(pass_hash: str, counts: dict[str, StageCount]) -> dict:
    return {"hash": pass_hash, "counts": {sid: c.to_json() for sid, c in counts.items()}}


def _load_counts(pass_dir: Path) -> dict[str, StageCount]:
    record = read_json(pass_dir / "_SUCCESS")
    return {sid: StageCount.from_json(c) for sid, c in record["counts"].items()}


def run_pipeline(
    spec: PipelineSpec, *, workers: int | None = None, force: bool = False, progress: bool = True
) -> Ledger:
    """Run ``spec`` locally and return the reconciled ledger."""
    return LocalRunner(spec, workers=workers, force=force).run(show_progress=progress)
