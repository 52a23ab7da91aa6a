"""Flat Arrow/numpy helpers: per-document pieces, segment sums, grouping equal keys."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


@dataclass(frozen=True)
class Segments:
    """A flat array of pieces (words, lines) with ``offsets`` into it, one span per doc."""

    values: pa.Array
    offsets: np.ndarray  # int64, length n_docs + 1

    @classmethod
    def from_lists(cls, lists: pa.Array) -> Segments:
        lists = lists.combine_chunks() if isinstance(lists, pa.ChunkedArray) else lists
        offsets = lists.offsets.to_numpy().astype(np.int64)
        values = lists.values.slice(offsets[0], offsets[-1] - offsets[0])
        return cls(values, offsets - offsets[0])

    @cached_property
    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)

    @cached_property
    def parent(self) -> np.ndarray:
        """Document index of every piece."""
        return np.repeat(np.arange(len(self.counts)), self.counts)

    @cached_property
    def lengths(self) -> np.ndarray:
        """Characters (code points) per piece."""
        return to_numpy(pc.utf8_length(self.values)).astype(np.int64)

    @cached_property
    def codes(self) -> tuple[np.ndarray, pa.Array]:
        """Dense id of every piece (equal pieces, equal ids) and the distinct pieces."""
        encoded = pc.dictionary_encode(self.values)
        return to_numpy(encoded.indices).astype(np.int64), encoded.dictionary

    def per_distinct(self, fn) -> np.ndarray:
        """``fn`` (Arrow array -> array) evaluated once per distinct piece, spread to all."""
        ids, distinct = self.codes
        return to_numpy(fn(distinct))[ids]

    def sum(self, values: np.ndarray) -> np.ndarray:
        """Per-document sum of a per-piece quantity."""
        return segment_sum(values, self.offsets)

    def count(self, mask: pa.Array | np.ndarray) -> np.ndarray:
        """Per-document count of pieces where ``mask`` holds."""
        return segment_sum(to_numpy(mask).astype(np.int64), self.offsets)

    def select(self, mask: np.ndarray) -> Segments:
        """Keep only the pieces where ``mask`` holds, per document."""
        counts = segment_sum(mask.astype(np.int64), self.offsets)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        return Segments(self.values.filter(pa.array(mask)), offsets)

    def join(self, separator: str) -> pa.Array:
        """Each document's pieces joined into one string."""
        lists = pa.LargeListArray.from_arrays(pa.array(self.offsets, pa.int64()), self.values)
        return pc.binary_join(lists, pa.scalar(separator, self.values.type))

    def to_lists(self) -> list[list[str]]:
        """Python lists, one per document (for tests and debugging)."""
        flat = self.values.to_pylist()
        return [flat[a:b] for a, b in zip(self.offsets[:-1], self.offsets[1:], strict=True)]


def segment_sum(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Sum of ``values`` over each ``[offsets[i], offsets[i+1])`` (empty spans give 0)."""
    acc = np.concatenate([[0], np.cumsum(values)])
    return acc[offsets[1:]] - acc[offsets[:-1]]


def to_numpy(array) -> np.ndarray:
    if isinstance(array, np.ndarray):
        return array
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return array.to_numpy(zero_copy_only=False)


def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with 0 where the denominator is 0."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den != 0)


@dataclass(frozen=True)
class Groups:
    """Equal keys grouped: ``ids[i]`` is the group of element ``i``, groups numbered in
    key order; ``counts`` and ``first_pos`` (smallest element index) per group."""

    ids: np.ndarray
    counts: np.ndarray
    first_pos: np.ndarray

    @property
    def first(self) -> np.ndarray:
        """Mask of elements that are the first occurrence of their key."""
        return self.first_pos[self.ids] == np.arange(len(self.ids))


def group(keys: np.ndarray) -> Groups:
    """Group equal integer keys (sort-based; several times faster than hashing here)."""
    order = np.argsort(keys)
    ordered = keys[order]
    new = np.ones(len(keys), dtype=bool)
    new[1:] = ordered[1:] != ordered[:-1]
    starts = np.flatnonzero(new)
    ids = np.empty(len(keys), dtype=np.int64)
    ids[order] = np.cumsum(new) - 1
    counts = np.diff(np.append(starts, len(keys)))
    first_pos = np.minimum.reduceat(order, starts) if len(keys) else order
    return Groups(ids, counts, first_pos)


def duplicates(pieces: Segments) -> tuple[np.ndarray, np.ndarray]:
    """Per document: how many pieces repeat an earlier piece, and their characters."""
    ids = pieces.codes[0]
    repeat = ~group(pieces.parent * (ids.max(initial=0) + 1) + ids).first
    return pieces.sum(repeat), pieces.sum(np.where(repeat, pieces.lengths, 0))
