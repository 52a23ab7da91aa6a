"""MinHash signatures and band keys in torch, for a GPU; bit-identical to the numpy path.

The same code runs on CPU tensors (tests/test_minhash_torch.py proves bit-identity
with ``winnow.kernels.minhash.signatures`` and ``band_keys`` there) and on CUDA
(the ``gpu``-marked test and benchmarks/minhash_gpu.py). Input: the 64-bit shingle
hashes and per-document offsets of ``MinHasher.shingle_hashes`` (text -> shingles
stays on the CPU: it is byte-level work a GPU does not speed up).

torch has no unsigned 64-bit arithmetic, so everything runs in ``int64`` with the
same bits: multiplication and addition wrap mod 2^64 alike for signed and unsigned,
right shifts are made logical with a mask, unsigned order is signed order after
flipping the top bit (``affine32`` runs in int32 lanes the same way), and
``x mod (2^61 - 1)`` of an unsigned 64-bit ``x`` is ``(x >> 61) + (x & p)``, less
``p`` once if that is ``>= p``.
"""

from __future__ import annotations

import numpy as np
import torch

from winnow.kernels.minhash import MERSENNE61, Permutations

_MASK32 = (1 << 32) - 1
_TOP = -(1 << 63)  # the sign bit as an int64
_I32_TOP, _I32_MAX = -(1 << 31), (1 << 31) - 1


def _signed(value: int) -> int:
    """An unsigned 64-bit constant as the int64 with the same bits."""
    return value - (1 << 64) if value >= 1 << 63 else value


_M1, _M2 = _signed(0xFF51AFD7ED558CCD), _signed(0xC4CEB9FE1A85EC53)
_POLY = _signed(0x9E3779B97F4A7C15)


def _lsr(x: torch.Tensor, shift: int) -> torch.Tensor:
    """Logical right shift of int64 bits."""
    return (x >> shift) & ((1 << (64 - shift)) - 1)


def fmix64(x: torch.Tensor) -> torch.Tensor:
    """murmur3's 64-bit finaliser on int64 bits."""
    x = x ^ _lsr(x, 33)
    x = x * _M1
    x = x ^ _lsr(x, 33)
    x = x * _M2
    return x ^ _lsr(x, 33)


def fmix32(x: torch.Tensor) -> torch.Tensor:
    """murmur3's 32-bit finaliser on values ``< 2^32`` held in int64."""
    x = x ^ (x >> 16)
    x = (x * 0x85EBCA6B) & _MASK32
    x = x ^ (x >> 13)
    x = (x * 0xC2B2AE35) & _MASK32
    return x ^ (x >> 16)


def to_torch(values: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """A uint64/uint32 numpy array as int64 bits on ``device``."""
    values = np.ascontiguousarray(values)
    if values.dtype == np.uint64:
        values = values.view(np.int64)
    return torch.from_numpy(values.astype(np.int64, copy=False)).to(device)


def signatures(
    hashes: torch.Tensor,
    offsets: np.ndarray,
    perms: Permutations,
    chunk: int = 1 << 16,
) -> torch.Tensor:
    """Signatures ``(docs, num_perm)`` as int64 bits (uint32 values for the 32-bit
    schemes); ``hashes`` are int64 shingle hashes on the target device. ``chunk``
    shingles are expanded to ``(chunk, num_perm)`` at a time."""
    device = hashes.device
    counts = np.diff(offsets)
    docs = torch.from_numpy(np.repeat(np.arange(len(counts)), counts)).to(device)
    if perms.scheme == "affine32":  # 32-bit lanes: half the memory traffic
        a, b = (_int32_bits(to_torch(v, device)) for v in (perms.a, perms.b))
        out = torch.full((len(counts), len(a)), _I32_MAX, dtype=torch.int32, device=device)
        for lo in range(0, len(hashes), chunk):
            x = _int32_bits(fmix32(hashes[lo : lo + chunk] & _MASK32))
            v = (a * x[:, None] + b) ^ _I32_TOP  # wraps mod 2^32; unsigned order as signed
            index = docs[lo : lo + chunk, None].expand_as(v)
            out.scatter_reduce_(0, index, v, reduce="amin", include_self=True)
        return (out ^ _I32_TOP).to(torch.int64) & _MASK32
    a, b = to_torch(perms.a, device), to_torch(perms.b, device)
    wide = perms.scheme == "affine64"
    empty = (1 << 63) - 1 if wide else _MASK32  # the maximum, in the order used for min
    out = torch.full((len(counts), len(a)), empty, dtype=torch.int64, device=device)
    for lo in range(0, len(hashes), chunk):
        x = hashes[lo : lo + chunk]
        if wide:
            v = (a * fmix64(x)[:, None] + b) ^ _TOP  # unsigned order as signed order
        else:
            v = a * (x & _MASK32)[:, None] + b
            v = _lsr(v, 61) + (v & MERSENNE61)
            v = torch.where(v >= MERSENNE61, v - MERSENNE61, v) & _MASK32
        index = docs[lo : lo + chunk, None].expand_as(v)
        out.scatter_reduce_(0, index, v, reduce="amin", include_self=True)
    return out ^ _TOP if wide else out


def _int32_bits(x: torch.Tensor) -> torch.Tensor:
    """int64 values ``< 2^32`` as the int32 with the same low 32 bits."""
    return torch.where(x >= 1 << 31, x - (1 << 32), x).to(torch.int32)


def band_keys(sig: torch.Tensor, bands: int, rows: int) -> torch.Tensor:
    """One 64-bit key per band ``(docs, bands)`` as int64 bits, as ``minhash.band_keys``."""
    if bands * rows > sig.shape[1]:
        raise ValueError(f"{bands} bands x {rows} rows need {bands * rows} permutations")
    grid = sig[:, : bands * rows].reshape(len(sig), bands, rows)
    h = torch.zeros((len(sig), bands), dtype=torch.int64, device=sig.device)
    for j in range(rows):
        h = h * _POLY + grid[:, :, j]
    return fmix64(h)


def to_numpy(values: torch.Tensor, scheme: str) -> np.ndarray:
    """Signatures back as the numpy path's dtype (uint32, or uint64 for affine64)."""
    array = values.cpu().numpy()
    return array.view(np.uint64) if scheme == "affine64" else array.astype(np.uint32)
