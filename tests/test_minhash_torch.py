"""The torch MinHash kernels: bit-identical to the numpy reference on CPU tensors, and on
a GPU (marked ``gpu``)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from winnow.kernels import minhash_torch as mt
from winnow.kernels.minhash import MinHasher, band_keys, permutations, signatures
from winnow.sample_text import real_documents

SCHEMES = ["affine32", "affine64", "mersenne"]


def edge_hashes(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random shingle hashes plus the values where signed and unsigned arithmetic part:
    0, 2^63 +- 1, 2^64 - 1, 2^32 +- 1, 2^61 +- 1; some documents empty."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 30, 200)
    counts[[0, 7, 199]] = 0
    offsets = np.concatenate([[0], np.cumsum(counts)])
    hashes = rng.integers(0, 2**64, offsets[-1], dtype=np.uint64)
    edges = [0, 1, 2**63 - 1, 2**63, 2**63 + 1, 2**64 - 1, 2**32 - 1, 2**32, 2**61 - 1, 2**61]
    hashes[: len(edges) * 4] = np.array(edges * 4, np.uint64)
    return hashes, offsets


def check(hashes, offsets, scheme, device, chunk=1 << 16):
    perms = permutations(64, 9, scheme)
    want = signatures(hashes, offsets, perms)
    sig = mt.signatures(mt.to_torch(hashes, device), offsets, perms, chunk=chunk)
    got = mt.to_numpy(sig, scheme)
    assert got.dtype == want.dtype and np.array_equal(got, want)
    keys = mt.band_keys(sig, 8, 8).cpu().numpy().view(np.uint64)
    assert np.array_equal(keys, band_keys(want, 8, 8, engine="numpy"))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_cpu_tensors_bit_identical(scheme):
    hashes, offsets = edge_hashes()
    check(hashes, offsets, scheme, "cpu", chunk=97)  # many chunks, docs split across them


@pytest.mark.parametrize("scheme", SCHEMES)
def test_real_text_bit_identical(scheme):
    hasher = MinHasher(num_perm=64, seed=9, scheme=scheme)
    texts = pa.array([d["text"] for d in real_documents(100)] + ["", "a b"])
    check(*hasher.shingle_hashes(texts), scheme, "cpu")


@pytest.mark.gpu
@pytest.mark.parametrize("scheme", SCHEMES)
def test_gpu_bit_identical(scheme):
    hashes, offsets = edge_hashes(1)
    check(hashes, offsets, scheme, "cuda")
