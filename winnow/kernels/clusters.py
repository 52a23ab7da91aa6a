"""Duplicate clustering math shared by the local and Spark backends.

Documents are numbered by the rank of their id (sorted ids), never by position, so
every choice below (a bucket's centre, a cluster's id, the kept document) is the
same however the corpus was sharded or ordered.

* **Star edges.** Documents sharing a band key form a bucket; instead of all pairs,
  each member is linked to the bucket's smallest rank. The connected components
  are the same as with all pairs, with one edge per member. ``STAR_EDGES_SQL`` is
  the same step in plain SQL (DuckDB locally, Spark SQL on a cluster) and
  ``star_edges`` its numpy twin.
* **Verification** drops candidate edges whose true Jaccard (of shingle sets) or
  signature agreement is below the threshold. Edges are checked against the
  bucket centre, so a member similar only to another member loses that edge.
  ``resolve_groups`` then checks every member against the document its cluster
  keeps, so a removed document is always verified against the one that stays
  (clusters do not chain A~B~C into removing C for A).
* **Keep policy.** ``keep_order_sql`` is the ORDER BY that ranks a group's members;
  the first one is kept. Ties (and the default policy) go to the smallest id.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np

KeepPolicy = Literal["lowest_id", "highest_score", "oldest"]

# Input: ``bands(node, band, key)``; output: ``(src, dst)`` with dst the bucket centre.
STAR_EDGES_SQL = """
WITH centres AS (
    SELECT band, key, min(node) AS centre
    FROM bands GROUP BY band, key HAVING count(*) > 1
)
SELECT DISTINCT b.node AS src, c.centre AS dst
FROM bands b JOIN centres c ON b.band = c.band AND b.key = c.key
WHERE b.node <> c.centre
"""


def star_edges(keys: np.ndarray, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct ``(src, dst)`` edges linking each bucket member to the bucket's
    smallest node; ``keys`` is ``(docs, bands)``, ``nodes`` the doc numbers."""
    src_all, dst_all = [], []
    for band in range(keys.shape[1]):
        order = np.lexsort((nodes, keys[:, band]))
        k, n = keys[order, band], nodes[order]
        new = np.ones(len(k), bool)
        new[1:] = k[1:] != k[:-1]
        group = np.cumsum(new) - 1
        centre = n[np.flatnonzero(new)][group]
        member = n != centre
        src_all.append(n[member])
        dst_all.append(centre[member])
    src, dst = np.concatenate(src_all), np.concatenate(dst_all)
    pairs = np.unique(np.stack([src, dst], axis=1), axis=0) if len(src) else np.zeros((0, 2))
    return pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)


def components(n: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Connected-component label of each of ``n`` nodes (undirected edges)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(src), np.int32), (src, dst)), shape=(n, n)).tocsr()
    return connected_components(graph, directed=False)[1]


def resolve_groups(
    labels: np.ndarray,
    priority: np.ndarray,
    score: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    threshold: float = 0.0,
    max_rounds: int = 64,
) -> np.ndarray:
    """The kept node for every node: its component's highest-priority (lowest value)
    node. With ``score``, a member joins that node only if ``score(member, kept) >=
    threshold``; the members that fail are resolved again among themselves (the next
    highest-priority one is kept, and so on) for up to ``max_rounds``, then kept."""
    n = len(labels)
    kept = np.arange(n)
    pending = np.flatnonzero(np.bincount(labels, minlength=n)[labels] > 1)
    for _ in range(max_rounds):
        if not len(pending):
            break
        lab = labels[pending]
        order = np.lexsort((priority[pending], lab))
        nodes, lab = pending[order], lab[order]
        head = np.ones(len(nodes), bool)
        head[1:] = lab[1:] != lab[:-1]
        leader = nodes[head][np.cumsum(head) - 1]
        members, leader = nodes[~head], leader[~head]
        ok = np.ones(len(members), bool) if score is None else score(members, leader) >= threshold
        kept[members[ok]] = leader[ok]
        pending = members[~ok]
    return kept


def pair_jaccard(
    values: np.ndarray, offsets: np.ndarray, u: np.ndarray, v: np.ndarray, chunk: int = 1 << 22
) -> np.ndarray:
    """Exact Jaccard of sets ``u[i]`` and ``v[i]``, where set ``j`` is the unique values
    ``values[offsets[j]:offsets[j+1]]``. Vectorised: one sort per ~``chunk`` values."""
    sizes = np.diff(offsets)
    out = np.empty(len(u))
    cost = np.cumsum(sizes[u] + sizes[v])
    lo = 0
    while lo < len(u):
        hi = max(lo + 1, int(np.searchsorted(cost, (cost[lo - 1] if lo else 0) + chunk)))
        out[lo:hi] = _pair_jaccard(values, offsets, sizes, u[lo:hi], v[lo:hi])
        lo = hi
    return out


def _pair_jaccard(values, offsets, sizes, u, v) -> np.ndarray:
    sets = np.stack([u, v], 1).ravel()  # u0, v0, u1, v1, ...
    lengths = sizes[sets]
    first = np.zeros(len(sets) + 1, np.int64)
    np.cumsum(lengths, out=first[1:])
    gathered = values[np.repeat(offsets[sets] - first[:-1], lengths) + np.arange(first[-1])]
    pair = np.repeat(np.arange(len(u)), sizes[u] + sizes[v])
    order = np.lexsort((gathered, pair))
    g, p = gathered[order], pair[order]
    same = (g[1:] == g[:-1]) & (p[1:] == p[:-1])
    inter = np.bincount(p[1:][same], minlength=len(u))
    union = sizes[u] + sizes[v] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def signature_agreement(sig_u: np.ndarray, sig_v: np.ndarray) -> np.ndarray:
    """Fraction of equal signature values per row: the MinHash Jaccard estimate."""
    return (sig_u == sig_v).mean(axis=1)


def keep_order_sql(keep: KeepPolicy, column: str | None, id_column: str = "id") -> str:
    """ORDER BY clause ranking a group's members, the kept one first."""
    ident = f'"{id_column}"'
    if keep == "lowest_id":
        return ident
    if column is None:
        raise ValueError(f"keep={keep!r} needs keep_column")
    direction = "DESC" if keep == "highest_score" else "ASC"
    return f'"{column}" {direction} NULLS LAST, {ident}'
