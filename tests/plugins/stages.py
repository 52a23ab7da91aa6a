"""Stages used only by the tests (importable by worker processes via PYTHONPATH)."""

import time

from winnow.stages.base import MapStage, Output, Params


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
