"""Plugin stages for the structure tests: resources, prepare/side outputs, requires and a
plugin global stage that ships its own Spark backend."""

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from winnow.scorers.base import Scorer
from winnow.stages.base import GlobalStage, MapStage, Output, Params, Resources


class WhoRan(MapStage):
    """Adds the worker's pid, the size of the slice it saw and its CUDA_VISIBLE_DEVICES."""

    resources = Resources(batch_rows=7)

    def process(self, table):
        n = table.num_rows
        table = table.append_column("pid", pa.array([os.getpid()] * n, pa.int64()))
        table = table.append_column("slice_rows", pa.array([n] * n, pa.int64()))
        gpus = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        return Output(table.append_column("gpus", pa.array([gpus] * n, pa.string())))


class OneWorker(WhoRan):
    """Like WhoRan, but declares a single worker (as a model-backed stage would)."""

    resources = Resources(workers=1)


class Vocabulary(MapStage):
    """Builds a shared artifact once in the driver (``prepare``) and tags rows with it."""

    materialize = True

    def artifact(self) -> Path:
        return Path(self.run_dir) / "artifacts" / f"{self.stage_id}.txt"

    def prepare(self):
        path = self.artifact()
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_suffix(".log"), "a") as log:  # counts the prepare calls
            log.write("prepared\n")
        path.write_text("alpha\nbeta\n")

    def side_outputs(self):
        return [self.artifact()]

    def setup(self):
        self.words = self.artifact().read_text().split()

    def process(self, table):
        has = pc.match_substring(table["text"], self.words[0])
        return Output(table.append_column("has_alpha", has))


class NeedsMissing(MapStage):
    """Declares an optional module that is not installed."""

    requires = {"winnow_no_such_module": "rephrase"}

    def process(self, table):
        return Output(table)


class CharCountParams(Params):
    column: str = "n_chars"
    """The column that receives each text's length in characters."""


class CharCount(GlobalStage):
    """A plugin global stage with its own Spark backend (``spark_backends.char_count``)."""

    Params = CharCountParams
    spark_backend = "plugins.spark_backends:char_count"

    def run(self, data, workdir):
        for table in data.tables():
            n = pc.utf8_length(table["text"]).cast(pa.int64())
            yield Output(table.append_column(self.params.column, n))


class NeedsMissingScorer(Scorer):
    """A scorer that declares an optional module that is not installed."""

    requires = {"winnow_no_such_module": "quality"}
