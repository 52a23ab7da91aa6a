"""Dataset-decomposition kernels: split documents into power-of-two pieces.

A document of ``n`` tokens is cut greedily from its start: while ``n - pos >= 2**lo``
take ``k = min(floor(log2(n - pos)), hi)`` and emit tokens ``[pos, pos + 2**k)`` into
bucket ``k``. What is left (``n mod 2**lo`` tokens) is dropped. Greedy pieces are the
binary digits of ``n``: ``n >> hi`` pieces of ``2**hi``, then one ``2**b`` piece per set
bit ``b`` of ``n`` in ``[lo, hi)``, largest first. ``greedy_plan`` computes them for many
documents at once; ``plan_document`` is the one-document reference twin, which can also
randomise the pieces taken while more than ``2**(hi+1)`` tokens remain, as the paper's
code does: ``k`` drawn from ``hi, hi-1, ..., lo`` with ``P(k)`` proportional to
``2**(hi-k)``, so long documents feed every bucket about equally in tokens.
"""

from __future__ import annotations

import numpy as np


def greedy_plan(lengths: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy pieces of every document: ``(doc, start, log2)``, sorted by doc then start."""
    lengths = np.asarray(lengths, np.int64)
    n_top = lengths >> hi
    total_top = int(n_top.sum())
    top_doc = np.repeat(np.arange(len(lengths)), n_top)
    first = np.repeat(np.cumsum(n_top) - n_top, n_top)
    docs = [top_doc]
    starts = [(np.arange(total_top) - first) << hi]
    logs = [np.full(total_top, hi, np.int8)]
    for bit in range(hi - 1, lo - 1, -1):
        (has,) = np.nonzero((lengths >> bit) & 1)
        docs.append(has)
        starts.append((lengths[has] >> (bit + 1)) << (bit + 1))
        logs.append(np.full(len(has), bit, np.int8))
    doc, start, log2 = np.concatenate(docs), np.concatenate(starts), np.concatenate(logs)
    order = np.lexsort((start, doc))
    return doc[order], start[order], log2[order]


def plan_document(
    n: int, lo: int, hi: int, rng: np.random.Generator | None = None
) -> list[tuple[int, int]]:
    """Pieces ``(start, log2)`` of one document of ``n`` tokens; ``rng`` randomises long ones."""
    ks = np.arange(hi, lo - 1, -1)
    cdf = np.cumsum(2.0 ** (hi - ks))
    cdf /= cdf[-1]
    pieces, pos = [], 0
    while n - pos >= 1 << lo:
        k = min((n - pos).bit_length() - 1, hi)
        if rng is not None and n - pos >= 1 << (hi + 1):
            k = int(ks[min(np.searchsorted(cdf, rng.random(), side="right"), len(ks) - 1)])
        pieces.append((pos, k))
        pos += 1 << k
    return pieces


def gather(flat: np.ndarray, starts: np.ndarray, size: int) -> np.ndarray:
    """Rows ``flat[s : s + size]`` for each start, as a ``(len(starts), size)`` array."""
    return flat[np.asarray(starts, np.int64)[:, None] + np.arange(size)]


def chunk_owners(lengths: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """For documents joined end to end and cut every ``size`` tokens (last partial chunk
    dropped): the document holding each chunk's first token and the offset within it."""
    ends = np.cumsum(np.asarray(lengths, np.int64))
    total = int(ends[-1]) if len(ends) else 0
    chunk_starts = np.arange(total // size, dtype=np.int64) * size
    owner = np.searchsorted(ends, chunk_starts, side="right")
    return owner, chunk_starts - (ends[owner] - np.asarray(lengths, np.int64)[owner])
