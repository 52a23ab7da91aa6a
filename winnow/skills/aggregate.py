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


def similarities(docs: np.ndarray, graph: SkillGraph, tau: float) -> np.ndarray:
    """``s``: (n, k) float64 cosine similarities, zeroed below ``tau``."""
    s = docs.astype(np.float64) @ graph.embeddings.astype(np.float64).T
    s[s < tau] = 0.0
    return s


def aggregate(
    s: np.ndarray, graph: SkillGraph, kind: str = "quad"
) -> tuple[np.ndarray, np.ndarray]:
    """``(node, edge)`` parts, float64, one value per row of ``s``."""
    w, a = graph.weights, graph.edges
    if kind == "quad":
        return (s * s) @ w, np.einsum("ni,ij,nj->n", s, a, s)
    if kind == "linear":
        edge = np.zeros(s.shape[0])
        for i, j, weight in graph.edge_list():
            edge += 2.0 * weight * np.minimum(s[:, i], s[:, j])
        return s @ w, edge
    raise ValueError(f"unknown aggregator {kind!r}; choose one of {', '.join(AGGREGATORS)}")


def top_skills(s: np.ndarray, names: list[str], k: int) -> list[list[str]]:
    """Names of each row's ``k`` most similar skills with ``s > 0``, most similar first."""
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return [[names[j] for j in row if s[i, j] > 0] for i, row in enumerate(order)]
