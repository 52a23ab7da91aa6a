"""The runner: plan, pass hashes, resume, ledger and publishing, for any executor.

One ``Runner`` drives every run; an *executor* only says how a pass's work is done
(``winnow.runners.local.LocalExecutor``: a process pool on this machine;
``winnow.spark.executor.SparkExecutor``: Spark tasks). For each pass of the plan the
runner

- hashes it (its stages' recipes, its parents' hashes, the input chunks' stat) and
  skips it when its ``_SUCCESS`` carries the same hash and its side outputs are intact;
  every part and rejected-rows file is recorded with its size and xxh3-128 (in the
  part's marker, or a global pass's ``_SUCCESS``), and a file that is missing or
  differs is named and exactly its task (or the global pass) is recomputed;
- calls each stage's ``prepare`` once, here in the driver;
- for a map pass, hands the executor one ``MapTask`` per input chunk or upstream part
  that has no current marker, with the pass's worker count: the runner's, capped by
  the ``resources.workers`` of its stages; for a global pass, hands it the stage and
  the materialised parents;
- records the counts and the digests of the stages' side outputs in ``_SUCCESS``.

The whole run holds the run directory (``winnow.runners.rundir``: ownership and
overlap checks, a lock, the in-progress mark). After the passes it checks the files
against the counts, cuts the sinks into ``.data.new/``, reconciles the ledger, and
only then publishes ``data/``, ``ledger.json`` and ``manifest.json`` together. Part
boundaries depend only on the input and ``chunk_rows``, never on the worker count,
and the final shards are cut from the concatenated stream, so output is
byte-identical for any executor and any number of workers, and a run killed with
``kill -9`` finishes, when started again, with the bytes of an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import pyarrow as pa

from winnow.config import INPUT, PipelineSpec, stage_parents
from winnow.errors import InputError, LedgerError, WinnowError
from winnow.files import read_json, reset_dir, tree_digest, write_json_atomic
from winnow.io.chunks import Chunk
from winnow.io.discovery import plan_chunks
from winnow.io.id_check import first_duplicate
from winnow.io.writers import ShardWriter, clone_or_copy, ipc_rows, read_table, write_table
from winnow.ledger import Ledger, StageCount
from winnow.plan import Pass, make_plan
from winnow.runners import rundir
from winnow.runners.layout import (
    READ_STAGE,
    file_damage,
    file_records,
    marker_path,
    part_path,
    pass_dir,
    pass_files,
    rejected_dir,
)
from winnow.runners.map_task import MapTask
from winnow.stages.base import GlobalStage, Materialized, Resources, Stage
from winnow.table import ID, TEXT, conform, unify_schemas
from winnow.versions import package_versions


class Executor(Protocol):
    """How a pass's work is done; the runner does everything else."""

    def map(self, tasks: list[MapTask], resources: Resources) -> Iterator[dict]:
        """Run the tasks (``run_map_task``), yielding their marker records; ``resources``
        holds the pass's worker cap and GPUs per worker."""

    def run_global(
        self, stage: GlobalStage, data: Materialized, folder: Path, advance: Callable[[], None]
    ) -> StageCount:
        """Run a global stage over ``data``; write its parts into ``folder`` and its
        rejected rows under the run's ``rejected/``; return its count."""


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def ledger_parents(spec: PipelineSpec) -> dict[str, list[str]]:
    """Stage -> parent stages, with the pseudo-stage ``read`` at the root."""
    parents = {READ_STAGE: []}
    for sid, ps in stage_parents(spec.stages).items():
        parents[sid] = [READ_STAGE if p == INPUT else p for p in ps]
    return parents


def pass_resources(stages: list[Stage], workers: int) -> Resources:
    """A pass's worker count (``workers`` capped by its stages') and GPUs per worker."""
    caps = [s.resources.workers for s in stages if s.resources.workers]
    return Resources(
        workers=min([workers, *caps]), gpus=max([0, *(s.resources.gpus for s in stages)])
    )


class Runner:
    """Execute a validated pipeline spec with ``executor``."""

    def __init__(
        self, spec: PipelineSpec, executor: Executor, *, workers: int = 1, force: bool = False
    ):
        self.spec = spec
        self.executor = executor
        self.run_dir = Path(spec.output.dir)
        self.plan, self.recipes = make_plan(spec)
        self.workers = workers
        self.force = force
        self.hashes: dict[str, str] = {}

    # -- hashing and resume --------------------------------------------------------
    def _pass_hash(self, p: Pass, chunks: list[Chunk] | None) -> str:
        parts = {
            "stages": [self.recipes[s].fingerprint for s in p.stage_ids],
            "parents": [self.hashes.get(x, x) for x in p.parents],
            "chunk_rows": self.spec.runner.chunk_rows,
        }
        if chunks is not None:
            parts["input"] = self.spec.input.model_dump(mode="json")
            parts["chunks"] = [(c.path, c.fmt, c.start, c.stop, _stat(c.path)) for c in chunks]
        return digest(parts)

    def _prepare_pass_dir(self, p: Pass, pass_hash: str) -> tuple[Path, bool]:
        """Return (dir, done); wipe stale output when the hash changed, a side output is
        missing or altered, or with --force."""
        folder = pass_dir(self.run_dir, p.id)
        success = folder / "_SUCCESS"
        if not self.force and success.exists():
            record = read_json(success)
            if (
                record["hash"] == pass_hash
                and self._side_outputs_intact(record)
                and self._files_intact(record, f"pass {p.id!r}")
            ):
                return folder, True
        hash_file = folder / "_HASH"
        stale = self.force or not hash_file.exists() or hash_file.read_text() != pass_hash
        if stale or p.kind == "global" or success.exists():
            reset_dir(folder)
            for sid in p.stage_ids + ([READ_STAGE] if p.reads_input else []):
                reset_dir(rejected_dir(self.run_dir, sid))
            hash_file.write_text(pass_hash)
        return folder, False

    def _part_intact(self, task: MapTask) -> bool:
        """The part has a current marker and its files match it; a damaged one is named."""
        marker = marker_path(task.pass_dir, task.index)
        if not marker.exists():
            return False
        record = read_json(marker)
        if record["hash"] != task.pass_hash:
            return False
        return self._files_intact(record, "it")

    def _files_intact(self, record: dict, redo: str) -> bool:
        """Whether the files a completion record lists are unchanged; names one if not."""
        problem = file_damage(self.run_dir, record.get("files", {}))
        if problem:
            print(f"winnow: {problem}; recomputing {redo}", file=sys.stderr)
        return problem is None

    def _side_outputs_intact(self, record: dict) -> bool:
        return all(
            tree_digest(self.run_dir / rel) == value
            for rel, value in record.get("side_outputs", {}).items()
        )

    def _finish_pass(self, folder: Path, pass_hash: str, counts, stages: list[Stage]) -> None:
        side = {}
        for stage in stages:
            for path in stage.side_outputs():
                rel = Path(path).resolve().relative_to(self.run_dir.resolve()).as_posix()
                side[rel] = tree_digest(Path(path))
        record = {
            "hash": pass_hash,
            "counts": {sid: c.to_json() for sid, c in counts.items()},
            "side_outputs": side,
        }
        if len(stages) == 1 and stages[0].kind == "global":  # map parts have markers
            written = [*folder.glob("part-*.arrow")]
            written += rejected_dir(self.run_dir, stages[0].stage_id).glob("part-*.arrow")
            record["files"] = file_records(self.run_dir, written)
        write_json_atomic(folder / "_SUCCESS", record)

    # -- passes --------------------------------------------------------------------
    def _build(self, p: Pass) -> list[Stage]:
        """The pass's stages, built here (the driver) and prepared once."""
        stages = [self.recipes[s].build(self.run_dir) for s in p.stage_ids]
        for stage in stages:
            stage.prepare()
        return stages

    def _run_map_pass(self, p: Pass, progress) -> dict[str, StageCount]:
        if p.reads_input:
            sources: list = plan_chunks(self.spec.input, self.spec.runner.chunk_rows)
            pass_hash = self._pass_hash(p, sources)
        else:
            sources = [f for parent in p.parents for f in pass_files(self.run_dir, parent)]
            pass_hash = self._pass_hash(p, None)
        self.hashes[p.id] = pass_hash
        folder, done = self._prepare_pass_dir(p, pass_hash)
        recipes = tuple(self.recipes[s] for s in p.stage_ids)
        tasks = [
            MapTask(folder, self.run_dir, pass_hash, i, src, self.spec.input, recipes)
            for i, src in enumerate(sources)
        ]
        todo = [t for t in tasks if not self._part_intact(t)]
        if done and not todo:
            return _load_counts(folder)
        (folder / "_SUCCESS").unlink(missing_ok=True)
        stages = self._build(p)
        bar = progress.add_task(f"{p.id} (map)", total=len(tasks), completed=len(tasks) - len(todo))
        for _ in self.executor.map(todo, pass_resources(stages, self.workers)):
            progress.advance(bar)
        if p.reads_input and self.spec.input.duplicate_ids == "fail":
            repeat = first_duplicate(folder, [src.path for src in sources])
            if repeat:
                raise InputError(repeat)
        counts: dict[str, StageCount] = {}
        for t in tasks:
            record = read_json(marker_path(folder, t.index))
            for sid, c in record["counts"].items():
                counts.setdefault(sid, StageCount()).add(StageCount.from_json(c))
        for sid in [READ_STAGE] * p.reads_input + p.stage_ids:
            counts.setdefault(sid, StageCount())
        self._finish_pass(folder, pass_hash, counts, stages)
        return counts

    def _run_global_pass(self, p: Pass, progress) -> dict[str, StageCount]:
        pass_hash = self._pass_hash(p, None)
        self.hashes[p.id] = pass_hash
        folder, done = self._prepare_pass_dir(p, pass_hash)
        if done:
            return _load_counts(folder)
        files = [f for parent in p.parents for f in pass_files(self.run_dir, parent)]
        data = Materialized(files)
        (stage,) = self._build(p)
        bar = progress.add_task(f"{p.id} (global)", total=None)
        (folder / "work").mkdir()
        try:
            count = self.executor.run_global(stage, data, folder, lambda: progress.advance(bar))
        except WinnowError as exc:
            raise WinnowError(f"stage {p.id!r}: {exc}") from None
        if not any(folder.glob("part-*.arrow")):
            write_table(part_path(folder, 0), data.schema.empty_table())
        count.check(p.id)
        progress.update(bar, total=1, completed=1)
        counts = {p.id: count}
        self._finish_pass(folder, pass_hash, counts, [stage])
        return counts

    # -- the whole run -------------------------------------------------------------
    def run(self, show_progress: bool = True) -> Ledger:
        from rich.progress import Progress

        with rundir.claimed(self.run_dir, self.spec.input.paths(), self.force):
            counts: dict[str, StageCount] = {}
            enabled = show_progress and self.spec.runner.progress
            with Progress(disable=not enabled, transient=False) as progress:
                for p in self.plan.passes:
                    run_pass = self._run_map_pass if p.kind == "map" else self._run_global_pass
                    with rundir.disk_errors(f"pass {p.id!r}", pass_dir(self.run_dir, p.id)):
                        counts.update(run_pass(p, progress))
            self._check_files(counts)
            with rundir.disk_errors("publishing", self.run_dir / rundir.NEW_DATA):
                return self._publish(counts)

    def _publish(self, counts: dict[str, StageCount]) -> Ledger:
        """Cut the shards into ``.data.new``, reconcile, then swap them in as ``data/``."""
        outputs = self._write_outputs()
        order = [READ_STAGE] + [s.id for s in self.spec.stages]
        ledger = Ledger(
            stages={sid: counts[sid] for sid in order},
            parents=ledger_parents(self.spec),
            input_rows=counts[READ_STAGE].rows_in,
            output_rows=sum(o["rows"] for o in outputs.values()),
            outputs={sink: o["rows"] for sink, o in outputs.items()},
        )
        ledger.reconcile()
        rundir.publish(self.run_dir, ledger.to_json(), self._manifest(outputs, ledger))
        return ledger

    def _write_outputs(self) -> dict[str, dict]:
        """Cut each sink's parts into final shards under ``.data.new/`` (``data/`` once
        published)."""
        sinks = self.plan.sinks
        outputs = {}
        for sink in sinks:
            sub = sink.id if len(sinks) > 1 else ""
            target = self.run_dir / rundir.NEW_DATA / sub
            files = pass_files(self.run_dir, sink.id)
            schema = unify_schemas([pa.ipc.open_file(str(f)).schema for f in files])
            if not schema.names:
                schema = pa.schema([(ID, pa.string()), (TEXT, pa.string())])
            reset_dir(target)
            shards = self._copy_parts(files, schema, target)
            if shards is None:
                out = self.spec.output
                writer = ShardWriter(target, out.format, out.shard_rows, out.shard_bytes)
                for f in files:
                    writer.write(conform(read_table(f), schema))
                shards = writer.close()
            outputs[sink.id] = {
                "dir": str(Path("data") / sub),
                "rows": sum(s["rows"] for s in shards),
                "bytes": sum(s["bytes"] for s in shards),
                "shards": shards,
                "schema": schema.to_string(show_schema_metadata=False).splitlines(),
            }
        return outputs

    def _copy_parts(self, files: list[Path], schema: pa.Schema, target: Path) -> list | None:
        """Publish the sink's parts as shards as they are (reflinks or copies, never hard
        links that would alias the pass's files), when the output is Arrow and every part
        already fits the shard limits and schema. Returns None when the stream must be
        re-cut by ``ShardWriter`` instead."""
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
            clone_or_copy(f, target / name)
            shards.append({"file": name, "rows": rows, "bytes": size})
        return shards

    def _check_files(self, counts: dict[str, StageCount]) -> None:
        """Rows on disk must match the counts: nothing silently lost between stages."""
        for p in self.plan.passes:
            rows = sum(ipc_rows(f) for f in pass_files(self.run_dir, p.id))
            if rows != counts[p.id].kept:
                raise LedgerError(f"pass {p.id!r}: {rows} rows on disk, {counts[p.id].kept} kept")
        for sid, c in counts.items():
            files = sorted(rejected_dir(self.run_dir, sid).glob("part-*.arrow"))
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


def _load_counts(folder: Path) -> dict[str, StageCount]:
    record = read_json(folder / "_SUCCESS")
    return {sid: StageCount.from_json(c) for sid, c in record["counts"].items()}
