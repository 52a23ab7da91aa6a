"""The batch loader: constant tokens per step, one bucket per step, resumable.

Each step's bucket comes from a ``winnow.trainer.curricula.Schedule``; within a bucket,
rows come from an endless stream of per-epoch seeded permutations, so the stream is
a pure function of (seed, bucket, rows consumed) and a resumed run continues it exactly.
With a ``winnow.trainer.mixture`` mixture, a step's rows are drawn by group from the
mixture's weights for the step instead (seeded by the step; the mixture's state is part
of the loader's, so a resumed run draws the same rows).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from winnow.trainer.curricula import Schedule
from winnow.trainer.mixture import Mixture, draw_rows


def _epoch_perm(seed: int, length: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed, length, epoch, 0xB0C4E7]).permutation(n)


def rows_for(seed: int, length: int, n: int, consumed: int, count: int) -> np.ndarray:
    """Rows ``consumed .. consumed+count`` of the endless stream of per-epoch seeded
    permutations of a bucket's ``n`` rows."""
    j = consumed + np.arange(count, dtype=np.int64)
    epoch, pos = j // n, j % n
    out = np.empty(count, np.int64)
    for e in np.unique(epoch):
        sel = epoch == e
        out[sel] = _epoch_perm(seed, length, int(e), n)[pos[sel]]
    return out


@dataclass
class Batch:
    step: int
    length: int
    tokens: np.ndarray  # (local batch, length)
    global_batch: int


class Loader:
    """Batches for a schedule of buckets with constant tokens per step.

    Each step's global batch is ``tokens_per_step // length`` rows; rank ``r`` of ``w``
    keeps rows ``r::w``. State (``state_dict``) is the step and the rows consumed
    per bucket, so a resumed run continues the exact same stream."""

    def __init__(
        self,
        sources: dict,
        schedule: Schedule,
        tokens_per_step: int,
        seed: int,
        rank: int = 0,
        world: int = 1,
        mixture: Mixture | None = None,
        groups: dict[int, np.ndarray] | None = None,
    ):
        """``groups``: per bucket length, each row's group index into ``mixture.groups``."""
        self.mixture, self.groups = mixture, groups
        self.sources, self.schedule = sources, schedule
        self.tokens_per_step, self.seed, self.rank, self.world = tokens_per_step, seed, rank, world
        for n in sources:
            if tokens_per_step % (n * world):
                raise ValueError(
                    f"tokens_per_step={tokens_per_step} is not a multiple of length {n} x "
                    f"world size {world}"
                )
        self.step = 0
        self.consumed = {n: 0 for n in sources}

    def batch_size(self, length: int) -> int:
        return self.tokens_per_step // length

    def next(self) -> Batch:
        n = self.schedule.bucket_at(self.step)
        source, size = self.sources[n], self.batch_size(n)
        if self.mixture is None:
            rows = rows_for(self.seed, n, source.num_rows, self.consumed[n], size)
        else:
            rng = np.random.default_rng([self.seed, self.step, 0x313A])
            rows = draw_rows(self.groups[n], self.mixture.weights_at(self.step), size, rng)
        self.consumed[n] += size
        batch = Batch(self.step, n, source.get(rows[self.rank :: self.world]), size)
        self.step += 1
        return batch

    def state_dict(self) -> dict:
        state = {"step": self.step, "consumed": {str(n): c for n, c in self.consumed.items()}}
        if self.mixture is not None:
            state["mixture"] = self.mixture.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        self.consumed = {int(n): int(c) for n, c in state["consumed"].items()}
        if self.mixture is not None:
            self.mixture.load_state_dict(state["mixture"])
