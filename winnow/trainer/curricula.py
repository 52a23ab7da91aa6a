"""Curricula over length buckets: which bucket each training step draws.

Bucket mode (Dataset Decomposition, Pouransari et al. 2024): each optimizer step
draws one bucket of length ``2^k`` and ``tokens_per_step / 2^k`` sequences from it.
The bucket of each step comes from a :class:`Schedule`, a pure function of
``(seed, step)``, so every rank agrees without communication.

Curricula follow the paper's "sampling odds" formulation. The step budget is cut
into ``cycles`` equal cycles; each cycle holds a fixed number of steps per bucket
(``mix``: ``natural`` = in proportion to the bucket's tokens, so all buckets are
consumed at the same rate; ``uniform`` = equal). Within a cycle the order is a
weighted draw without replacement where each step of bucket ``i`` has weight
``odds[i]``: big odds for short buckets means short sequences early and long ones
late in every cycle (grow), the reverse shrinks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Curriculum:
    """How often and in which order buckets come up within each cycle.

    ``mix``: steps per bucket per cycle, ``natural`` (by tokens) or ``uniform``;
    ``growth``/``base``: sampling odds of the i-th shortest of K buckets, ``1`` for
    ``flat``, ``K - i`` for ``linear``, ``base^(K-1-i)`` for ``power``; ``shrink``
    reverses them (long sequences first)."""

    name: str
    mix: str = "natural"
    growth: str = "flat"
    base: float = 2.0
    shrink: bool = False

    def odds(self, k: int) -> np.ndarray:
        i = np.arange(k, dtype=np.float64)
        if self.growth == "linear":
            w = k - i
        elif self.growth == "power":
            w = self.base ** (k - 1 - i)
        else:
            w = np.ones(k)
        return w[::-1].copy() if self.shrink else w


CURRICULA: dict[str, Curriculum] = {
    c.name: c
    for c in (
        Curriculum("natural"),
        Curriculum("uniform", mix="uniform"),
        Curriculum("grow_linear", growth="linear"),
        Curriculum("grow_p2", growth="power", base=2.0),
        Curriculum("grow_p100", growth="power", base=100.0),
        Curriculum("shrink", growth="power", base=100.0, shrink=True),
    )
}


def get_curriculum(name: str) -> Curriculum:
    key = name.lower().replace("-", "_")
    if key not in CURRICULA:
        raise ValueError(f"unknown curriculum {name!r}; choose one of {sorted(CURRICULA)}")
    return CURRICULA[key]


def _largest_remainder(total: int, weights: np.ndarray) -> np.ndarray:
    share = total * weights / weights.sum()
    counts = np.floor(share).astype(np.int64)
    rest = total - counts.sum()
    counts[np.argsort(-(share - counts), kind="stable")[:rest]] += 1
    return counts


class Schedule:
    """Which bucket each step draws: a pure function of (seed, step)."""

    def __init__(
        self,
        curriculum: Curriculum,
        lengths: Sequence[int],
        tokens: Sequence[int],
        total_steps: int,
        cycles: int = 8,
        seed: int = 0,
    ):
        self.curriculum = curriculum
        self.lengths = np.asarray(sorted(lengths), np.int64)
        by_len = dict(zip(lengths, tokens, strict=True))
        weights = np.array([by_len[n] for n in self.lengths], np.float64)
        if curriculum.mix == "uniform":
            weights = np.ones_like(weights)
        self.cycle_len = max(1, math.ceil(total_steps / max(1, cycles)))
        self.counts = _largest_remainder(self.cycle_len, weights)
        self.odds = curriculum.odds(len(self.lengths))
        self.seed = seed
        self._cache: dict[int, np.ndarray] = {}

    def cycle(self, c: int) -> np.ndarray:
        """Bucket indices (into ``lengths``) of the steps of cycle ``c``: Efraimidis-Spirakis
        weighted sampling without replacement, each step slot weighted by its bucket's odds."""
        if c not in self._cache:
            rng = np.random.default_rng([self.seed, c, 0x5EED])
            slots = np.repeat(np.arange(len(self.lengths)), self.counts)
            keys = np.log(rng.random(len(slots))) / self.odds[slots]
            self._cache = {c: slots[np.argsort(-keys, kind="stable")]}
        return self._cache[c]

    def bucket_at(self, step: int) -> int:
        return int(self.lengths[self.cycle(step // self.cycle_len)[step % self.cycle_len]])
