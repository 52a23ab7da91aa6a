"""The local executor: a process pool on this machine (the default way to run).

Map passes run one ``MapTask`` per input chunk or upstream part in a ``forkserver``
pool of the pass's worker count (see ``Runner``: the runner's count, capped by the
stages' ``resources.workers``, so a model-backed pass can hold one model while
cheap passes use every core). A pass whose stages need GPUs gets at most one worker
per ``gpus`` visible devices (``CUDA_VISIBLE_DEVICES``, else ``/dev/nvidia<N>``), and
each worker sees only its own. Global stages run their ``run`` in this process.
"""

from __future__ import annotations

import multiprocessing
import os
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from winnow.config import PipelineSpec
from winnow.ledger import Ledger, StageCount
from winnow.runners.layout import write_part, write_rejected
from winnow.runners.map_task import MapTask, count_output, run_map_task
from winnow.runners.orphans import exit_with
from winnow.runners.runner import Runner
from winnow.stages.base import GlobalStage, Materialized, Resources


def visible_gpus() -> list[str]:
    """The GPU ids this process may use."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g for g in env.split(",") if g.strip()]
    dev = Path("/dev")
    return sorted(m[1] for p in dev.glob("nvidia*") if (m := re.fullmatch(r"nvidia(\d+)", p.name)))


def _init_worker(counter, gpu_groups: list[str], main_pid: int) -> None:
    """The pool already uses every core: keep libraries in a worker to one thread; give
    the worker its own GPUs when the pass needs any; end it when the run's main process
    ends (even by ``kill -9``)."""
    exit_with(main_pid)
    for var in ("RAYON_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    if gpu_groups:
        with counter.get_lock():
            index = counter.value
            counter.value += 1
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu_groups[index % len(gpu_groups)]


def run_global_here(
    stage: GlobalStage, data: Materialized, folder: Path, advance: Callable[[], None]
) -> StageCount:
    """Run ``stage.run`` in this process; write its parts and rejected rows."""
    count = StageCount(rows_in=data.num_rows)
    for i, out in enumerate(stage.run(data, folder / "work")):
        count.add(count_output(stage.stage_id, 0, out, f" (output {i})", check=False))
        write_part(folder, i, out.kept)
        if out.rejected is not None and out.rejected.num_rows:
            write_rejected(stage.run_dir, stage.stage_id, i, out.rejected)
        advance()
    return count


class LocalExecutor:
    """Map tasks in a process pool, global stages in this process."""

    def map(self, tasks: list[MapTask], resources: Resources) -> Iterator[dict]:
        workers = resources.workers or 1
        groups: list[str] = []
        if resources.gpus:
            gpus = visible_gpus()
            per = resources.gpus
            groups = [",".join(gpus[i : i + per]) for i in range(0, len(gpus) - per + 1, per)]
            workers = min(workers, max(1, len(groups)))
        if (workers == 1 or len(tasks) <= 1) and not groups:
            for t in tasks:
                yield run_map_task(t)
            return
        ctx = multiprocessing.get_context("forkserver")
        counter = ctx.Value("i", 0)
        with ProcessPoolExecutor(
            workers,
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(counter, groups, os.getpid()),
        ) as pool:
            yield from pool.map(run_map_task, tasks)

    def run_global(
        self, stage: GlobalStage, data: Materialized, folder: Path, advance: Callable[[], None]
    ) -> StageCount:
        return run_global_here(stage, data, folder, advance)


class LocalRunner(Runner):
    """The runner with the local executor."""

    def __init__(self, spec: PipelineSpec, *, workers: int | None = None, force: bool = False):
        w = workers if workers is not None else spec.runner.workers
        count = (os.cpu_count() or 1) if w == "auto" else max(1, int(w))
        super().__init__(spec, LocalExecutor(), workers=count, force=force)


def run_pipeline(
    spec: PipelineSpec, *, workers: int | None = None, force: bool = False, progress: bool = True
) -> Ledger:
    """Run ``spec`` locally and return the reconciled ledger."""
    return LocalRunner(spec, workers=workers, force=force).run(show_progress=progress)
