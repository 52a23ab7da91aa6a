"""Merge redundant skills by embedding similarity (greedy, deterministic).

Candidates are visited by frequency (most frequent first, ties by name). Each joins
the most similar representative already chosen when that cosine similarity is at
least ``threshold``, else it becomes a representative itself; so every group's
name is its most frequent member. The report lists each group's members with their
frequency and similarity to the representative.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Merged:
    names: list[str]
    """Representative names, in visiting order."""
    embeddings: np.ndarray
    """Unit embedding of each representative."""
    report: list[dict]
    """Per group: ``skill``, ``frequency`` (summed over members), ``members``."""


def merge_skills(
    frequency: dict[str, int], embeddings: dict[str, np.ndarray], threshold: float
) -> Merged:
    """Group skill names whose embeddings are within ``threshold`` cosine similarity."""
    order = sorted(frequency, key=lambda name: (-frequency[name], name))
    reps: list[int] = []
    groups: list[list[tuple[str, float]]] = []
    matrix = np.stack([embeddings[name] for name in order]) if order else np.zeros((0, 0))
    for idx, name in enumerate(order):
        if reps:
            sims = matrix[reps] @ matrix[idx]
            best = int(np.argmax(sims))  # first maximum: the earlier representative wins ties
            if sims[best] >= threshold:
                groups[best].append((name, float(sims[best])))
                continue
        reps.append(idx)
        groups.append([(name, 1.0)])
    report = [
        {
            "skill": members[0][0],
            "frequency": sum(frequency[m] for m, _ in members),
            "members": [
                {"name": m, "frequency": frequency[m], "similarity": round(s, 6)}
                for m, s in members
            ],
        }
        for members in groups
    ]
    return Merged([order[i] for i in reps], matrix[reps], report)
