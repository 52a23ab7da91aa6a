"""The skill graph: node weights from skill frequency, edges from co-occurrence.

``w_i = freq_i / sum_k freq_k`` where ``freq_i`` counts the reference documents
labelled with skill i; ``A_ij = cooc_ij / sum_{k != l} cooc_kl`` where ``cooc_ij``
counts documents labelled with both i and j. ``A`` is symmetric with a zero
diagonal, and both ``w`` and ``A`` sum to 1 (``A`` is all zeros when no document has
two skills). Skills no document carries are dropped, unless ``keep_unused`` (a user's
closed list of labels keeps every label, with weight 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SkillGraph:
    names: list[str]
    weights: np.ndarray
    """``w``, shape (k,), float64, sums to 1."""
    edges: np.ndarray
    """``A``, shape (k, k), float64, symmetric, zero diagonal, sums to 1 (or all 0)."""
    embeddings: np.ndarray
    """Unit embedding of each skill, shape (k, d), float32."""
    frequency: np.ndarray
    """Documents labelled with each skill, int64."""

    def edge_list(self) -> list[tuple[int, int, float]]:
        """``(i, j, A_ij)`` for every non-zero edge with ``i < j``."""
        i, j = np.nonzero(np.triu(self.edges, k=1))
        return [(int(a), int(b), float(self.edges[a, b])) for a, b in zip(i, j, strict=True)]


def build_graph(
    names: list[str], embeddings: np.ndarray, labels: list[list[int]], keep_unused: bool = False
) -> SkillGraph:
    """The graph of ``names`` from each document's skill indices ``labels``."""
    k = len(names)
    freq = np.zeros(k, dtype=np.int64)
    cooc = np.zeros((k, k), dtype=np.int64)
    for doc in labels:
        idx = np.unique(np.asarray(doc, dtype=np.int64))
        freq[idx] += 1
        cooc[np.ix_(idx, idx)] += 1
    np.fill_diagonal(cooc, 0)
    used = np.arange(k) if keep_unused else np.nonzero(freq)[0]
    freq, cooc = freq[used], cooc[np.ix_(used, used)]
    weights = freq / freq.sum() if freq.sum() else freq.astype(np.float64)
    total = cooc.sum()
    edges = cooc / total if total else np.zeros(cooc.shape, dtype=np.float64)
    return SkillGraph(
        [names[i] for i in used],
        weights.astype(np.float64),
        edges.astype(np.float64),
        np.asarray(embeddings, dtype=np.float32)[used],
        freq,
    )
