"""Stable, seeded hashes of string columns (xxh3), and the one map from a 64-bit hash
to the unit interval that sampling, splits and mixing share."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import xxhash


def hash_strings(values: pa.Array | pa.ChunkedArray, seed: int) -> np.ndarray:
    """64-bit xxh3 of each string's UTF-8 bytes (nulls hash as empty), as uint64."""
    out = np.empty(len(values), dtype=np.uint64)
    h = xxhash.xxh3_64_intdigest
    for i, v in enumerate(values.to_pylist()):
        out[i] = h((v or "").encode(), seed=seed)
    return out


def to_unit(keys: np.ndarray) -> np.ndarray:
    """Uniform 64-bit hashes -> floats in [0, 1) (the top 53 bits, exactly)."""
    return (np.asarray(keys, np.uint64) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def unit_interval(values: pa.Array | pa.ChunkedArray, seed: int) -> np.ndarray:
    """Map each string to a uniform float in [0, 1), stable across runs and shardings."""
    return to_unit(hash_strings(values, seed))
