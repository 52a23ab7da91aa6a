"""The Spark executor: the runner's passes as Spark tasks.

- **map passes**: one ``mapInArrow`` over a DataFrame with one row (and one
  partition, so one Spark task) per ``MapTask``. Each task runs ``run_map_task``,
  as the local pool does: it reads its chunk or upstream part, runs the fused stages
  and writes its part, rejected rows and marker atomically, so a retried task
  rewrites the same bytes. Stage setup is cached per Python worker
  (``spark.python.worker.reuse``, the default). Errors a user can cause come back as
  records, not exceptions, so Spark does not retry them; the driver raises them.
- **global passes**: a stage that names a ``spark_backend`` (an import path, resolved
  here, lazily) runs it: ``run(spark, stage, data, folder) -> StageCount`` (see
  ``winnow.spark.backends``). A stage without one runs its local ``run`` on the
  driver over the materialised parts, with a warning; so does any stage whose input
  is empty (nothing to distribute, and the local empty-output layout).

Executors write into the run directory, so it must be on a filesystem they all
share: local disk for ``local[*]``, an NFS or fuse mount on a cluster.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
from pyspark import cloudpickle

from winnow.config import PipelineSpec
from winnow.errors import ConfigError, WinnowError
from winnow.ledger import Ledger, StageCount
from winnow.registry import import_object
from winnow.runners.local import run_global_here
from winnow.runners.map_task import MapTask, run_map_task
from winnow.runners.runner import Runner
from winnow.spark.session import error_class, get_session, unwrap_errors
from winnow.stages.base import GlobalStage, Materialized, Resources

log = logging.getLogger("winnow.spark")


def _run_tasks(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: run each pickled MapTask; yield its marker record as JSON."""
    for batch in batches:
        for index, blob in zip(batch["index"].to_pylist(), batch["task"].to_pylist(), strict=True):
            try:
                record = run_map_task(cloudpickle.loads(blob))
            except WinnowError as exc:  # deterministic: report it instead of retrying
                record = {"error": str(exc), "type": type(exc).__name__}
            yield pa.record_batch({"index": [index], "record": [json.dumps(record)]})


def spark_backend(stage: GlobalStage) -> Callable | None:
    """The stage's Spark backend function, or None when it declares none."""
    if stage.spark_backend is None:
        return None
    try:
        return import_object(stage.spark_backend, "Spark backend")
    except ValueError as exc:  # the runner names the stage
        raise ConfigError(str(exc)) from None


class SparkExecutor:
    """Map tasks as Spark tasks; global stages through their Spark backends."""

    def __init__(self, spark):
        self.spark = spark

    def map(self, tasks: list[MapTask], resources: Resources) -> Iterator[dict]:
        """One Spark task per map task (Spark sizes the cluster, not ``resources``)."""
        if not tasks:
            return
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
                raise error_class(record["type"])(record["error"])
        yield from records

    def run_global(
        self, stage: GlobalStage, data: Materialized, folder: Path, advance: Callable[[], None]
    ) -> StageCount:
        backend = spark_backend(stage)
        if backend is None:
            kind = stage.name or type(stage).__name__  # plugins may leave name unset
            log.warning(
                "stage %r (%s): no Spark backend yet; ran on the driver", stage.stage_id, kind
            )
        if backend is None or data.num_rows == 0:
            return run_global_here(stage, data, folder, advance)
        with unwrap_errors():
            count = backend(self.spark, stage, data, folder)
        advance()
        return count


class SparkRunner(Runner):
    """The runner with the Spark executor; same outputs as ``LocalRunner``."""

    def __init__(self, spec: PipelineSpec, spark=None, *, force: bool = False):
        spark = spark if spark is not None else get_session()
        super().__init__(spec, SparkExecutor(spark), force=force)

    def run(self, show_progress: bool = False) -> Ledger:
        return super().run(show_progress=show_progress)


def run_spark(
    spec: PipelineSpec, *, master: str | None = None, force: bool = False, progress: bool = False
) -> Ledger:
    """Run ``spec`` on Spark (``master`` as for ``get_session``) and return the ledger."""
    quiet = {} if progress else {"spark.ui.showConsoleProgress": "false"}
    return SparkRunner(spec, get_session(master, conf=quiet), force=force).run(
        show_progress=progress
    )
