"""Stages used only by the tests (importable by worker processes via PYTHONPATH)."""

import time

from winnow.stages.base import GlobalStage, MapStage, Output, Params


class SlowParams(Params):
    seconds: float = 0.2


class Slow(MapStage):
    Params = SlowParams

    """Pass-through that sleeps per chunk, so a test can kill a run midway."""

    def process(self, table):
        time.sleep(self.params.seconds)
        return Output(table)


class Leaky(MapStage):
    """A buggy stage that silently drops a row: the ledger must catch it."""

    def process(self, table):
        return Output(table.slice(1))


class FailOnceParams(Params):
    flag: str
    """A file path: absent means "not failed yet"; created just before failing."""
    when_id: str
    """Fail on the chunk holding this id."""


class FailOnce(MapStage):
    """Pass-through that raises once on one chunk, so a test can watch a task retry."""

    Params = FailOnceParams

    def process(self, table):
        from pathlib import Path

        flag = Path(self.params.flag)
        if self.params.when_id in table.column("id").to_pylist() and not flag.exists():
            flag.touch()
            raise RuntimeError(f"injected failure on the chunk holding {self.params.when_id}")
        return Output(table)


class LongestFirst(GlobalStage):
    """A plugin global stage (no Spark backend): every row, longest text first."""

    def run(self, data, workdir):
        import pyarrow as pa
        import pyarrow.compute as pc

        table = pa.concat_tables(data.tables())
        order = pc.sort_indices(
            table.append_column("n", pc.utf8_length(table["text"])),
            [("n", "descending"), ("id", "ascending")],
        )
        yield Output(table.take(order))


class SlowGlobal(GlobalStage):
    """A global pass-through that sleeps before each part it writes, so a test can kill
    a run inside a global pass."""

    Params = SlowParams

    def run(self, data, workdir):
        for table in data.tables():
            time.sleep(self.params.seconds)
            yield Output(table)
