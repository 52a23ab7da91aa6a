"""Score documents against a skill graph.

``s_i = cos(doc, skill_i)``, set to 0 below the floor ``tau`` (a skill the document
does not touch contributes nothing). Aggregators, each returning a node part and an
edge part (the score is ``node + edge_weight * edge``):

- ``quad`` (the default): node ``sum_i w_i s_i^2``, edge ``sum_{i != j} A_ij s_i s_j``,
  i.e. ``s^T (diag(w) + A) s``: a document scores high when it covers frequent skills
  and skills that co-occur in the reference.
- ``linear``: node ``sum_i w_i s_i``, edge ``sum_{i != j} A_ij min(s_i, s_j)`` (an
  edge counts as much as its weaker end).

MASS does not publish its exact form, so this is a documented choice.
"""

from __future__ import annotations

import numpy as np

from winnow.skills.graph import SkillGraph

AGGREGATORS = ("quad", "linear")


def rowwise(x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``x @ m.T`` in float64, one matrix-vector product per row of ``x``.

    A matrix-matrix product may round a row differently depending on how many rows
    share the call (BLAS blocks by size), which would make scores depend on the
    shard size; a product per row computes each row the same way every time.
    """
    m = np.ascontiguousarray(m, dtype=np.float64)
    out = np.empty((x.shape[0], m.shape[0]), dtype=np.float64)
    for i, row in enumerate(np.asarray(x, dtype=np.float64)):
        out[i] = m @ row
    return out


def similarities(docs: np.ndarray, graph: SkillGraph, tau: float) -> np.ndarray:
    """``s``: (n, k) float64 cosine similarities, zeroed below ``tau``."""
    s = rowwise(docs, graph.embeddings)
    s[s < tau] = 0.0
    return s


def aggregate(
    s: np.ndarray, graph: SkillGraph, kind: str = "quad"
) -> tuple[np.ndarray, np.ndarray]:
    """``(node, edge)`` parts, float64, one value per row of ``s``."""
    w, a = graph.weights, graph.edges
    if kind == "quad":
        edge = (rowwise(s, a) * s).sum(axis=1)
        return rowwise(s * s, w[None, :])[:, 0], edge
    if kind == "linear":
        edge = np.zeros(s.shape[0])
        for i, j, weight in graph.edge_list():
            edge += 2.0 * weight * np.minimum(s[:, i], s[:, j])
        return rowwise(s, w[None, :])[:, 0], edge
    raise ValueError(f"unknown aggregator {kind!r}; choose one of {', '.join(AGGREGATORS)}")


def top_skills(s: np.ndarray, names: list[str], k: int) -> list[list[str]]:
    """Names of each row's ``k`` most similar skills with ``s > 0``, most similar first."""
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return [[names[j] for j in row if s[i, j] > 0] for i, row in enumerate(order)]
