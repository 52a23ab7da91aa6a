"""Stable, seeded hashes of string columns (xxh3), used for sampling and splits."""

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


def unit_interval(values: pa.Array | pa.ChunkedArray, seed: int) -> np.ndarray:
    """Map each string to a uniform float in [0, 1), stable across runs and shardings."""
    return (hash_strings(values, seed) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
