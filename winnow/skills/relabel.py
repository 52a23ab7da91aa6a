"""Relabel documents against the merged skill list: top-m skills above a floor.

A document is labelled with the (at most) ``top_m`` skills whose embedding is most
similar to its own, keeping only similarities of at least ``tau``; ties go to the
lower skill index, so labels are deterministic.
"""

from __future__ import annotations

import numpy as np


def relabel(docs: np.ndarray, skills: np.ndarray, top_m: int, tau: float) -> list[list[int]]:
    """For each document row of ``docs``, the indices of its skills, most similar first."""
    if skills.shape[0] == 0:
        return [[] for _ in range(docs.shape[0])]
    sims = docs @ skills.T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :top_m]
    return [[int(j) for j in row if sims[i, j] >= tau] for i, row in enumerate(order)]
