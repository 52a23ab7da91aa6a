"""MinHash signatures and LSH band keys over whole Arrow batches.

Text becomes 64-bit shingle hashes in ``winnow.kernels.shingles`` (steps 1-2:
normalised words, rolling n-grams); this module does the rest. Everything is a pure
function of its inputs (no files, no global state), so the local DuckDB backend and
a Spark ``mapInArrow`` share it.

3. **Signatures.** datasketch's permutation schemes, applied permutation-major over
   cache-sized blocks of shingles and reduced per document with ``minimum.reduceat``:
   ``affine32`` (default; datasketch's default since 2.0: murmur3-finalise the
   32-bit input hash, then ``a*h + b mod 2^32`` with odd ``a``, a bijection, so the
   permutation adds no collisions), ``affine64`` (the same in 64 bits) and
   ``mersenne`` (datasketch's ``legacy``: ``(a*h + b) mod (2^61 - 1)``, low 32 bits).
   Parameters come from ``numpy.random.RandomState(seed)`` exactly as datasketch
   draws them, so for the same seed, ``num_perm``, scheme and hash function the
   signatures are bit-identical to ``datasketch.MinHash`` (``MinHasher.hashfunc``
   is the hash function to give it). ``hash="sha1"`` reproduces datasketch's
   default hash function (one Python call per shingle: a compatibility mode).
4. **Bands.** ``rows`` consecutive signature values are folded into one 64-bit
   band key. Two different band tuples share a key with probability 2^-64 per
   pair and band: at 10^7 documents and 14 bands, ~10^-4 spurious candidates
   in total, each removed by verification or harmless at the threshold.

``engine="numba"`` (the default ``auto`` when numba is installed) runs all four steps
through the compiled twins of ``winnow.kernels.minhash_jit``: pure-ASCII tokens go
from bytes to word hashes in one pass (only tokens with non-ASCII bytes take the
Arrow path of step 1), and shingles are folded straight into the signatures;
``engine="numpy"`` is the vectorised reference, bit-identical to it.
``winnow.kernels.minhash_torch`` does steps 3-4 on a GPU, bit-identical too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Literal, NamedTuple

import numpy as np
import pyarrow as pa

from winnow.kernels.shingles import (
    POLY,
    TextNorm,
    Unit,
    char_hashes,
    compiled_word_hashes,
    fmix32,
    fmix64,
    hash_bytes,
    hash_bytes_py,
    ngram_hashes,
    normalize,
    normalize_py,
    offsets_of,
    shingle_counts,
    shingle_hash_py,
    shingles_py,
    word_hashes,
)

__all__ = [  # the shingle functions are re-exported: callers import them from here
    "MinHasher",
    "Permutations",
    "TextNorm",
    "band_keys",
    "candidate_probability",
    "compiled_signatures",
    "compiled_word_hashes",
    "hash_bytes",
    "hash_bytes_py",
    "lsh_params",
    "normalize",
    "normalize_py",
    "permutations",
    "shingle_hash_py",
    "shingles_py",
    "signatures",
    "word_hashes",
]

Engine = Literal["auto", "numpy", "numba"]
Scheme = Literal["affine32", "affine64", "mersenne"]
HashName = Literal["fast", "sha1"]

MASK32 = (1 << 32) - 1
MERSENNE61 = (1 << 61) - 1
_BLOCK = 1 << 16  # shingles per signature block: ~256 KiB of uint32, stays in L2

# ---------------------------------------------------------------------- signatures


class Permutations(NamedTuple):
    a: np.ndarray
    b: np.ndarray
    scheme: Scheme


def permutations(num_perm: int, seed: int, scheme: Scheme = "affine32") -> Permutations:
    """Permutation parameters, drawn from ``RandomState(seed)`` in datasketch's order."""
    gen = np.random.RandomState(seed)
    if scheme == "mersenne":
        pairs = [
            (
                gen.randint(1, MERSENNE61, dtype=np.uint64),
                gen.randint(0, MERSENNE61, dtype=np.uint64),
            )
            for _ in range(num_perm)
        ]
        ab = np.array(pairs, dtype=np.uint64).T
        return Permutations(ab[0].copy(), ab[1].copy(), scheme)
    width = {"affine32": 32, "affine64": 64}[scheme]
    dtype = np.uint32 if width == 32 else np.uint64
    a = gen.randint(0, 1 << (width - 1), num_perm, dtype=dtype) * dtype(2) + dtype(1)
    b = gen.randint(0, 1 << width, num_perm, dtype=dtype)
    return Permutations(a, b, scheme)


def _sig_dtype(scheme: Scheme) -> type:
    return np.uint64 if scheme == "affine64" else np.uint32


def signatures(hashes: np.ndarray, offsets: np.ndarray, perms: Permutations) -> np.ndarray:
    """MinHash signatures ``(docs, num_perm)``; a doc without shingles gets all-max.

    ``hashes`` are the input hash values (uint64; 32-bit schemes use the low 32 bits).
    """
    dtype = _sig_dtype(perms.scheme)
    num_perm = len(perms.a)
    counts = np.diff(offsets)
    out = np.full((len(counts), num_perm), np.iinfo(dtype).max, dtype)
    docs = np.flatnonzero(counts)
    if not len(docs):
        return out
    hashes = np.asarray(hashes, np.uint64)
    if perms.scheme == "affine32":
        hv = fmix32(hashes.astype(np.uint32), inplace=True)
    elif perms.scheme == "affine64":
        hv = fmix64(hashes)
    else:
        hv = hashes & np.uint64(MASK32)
    # Blocks of whole documents holding about _BLOCK shingles each.
    starts = offsets[docs]
    cuts = np.searchsorted(starts, np.arange(0, offsets[-1], _BLOCK), side="left")
    cuts = np.unique(np.append(cuts, len(docs)))
    prime, low = np.uint64(MERSENNE61), np.uint64(MASK32)
    ends = offsets[docs[cuts[1:] - 1] + 1]
    buffer = np.empty(int((ends - starts[cuts[:-1]]).max()), hv.dtype)  # reused: no page faults
    params = list(zip(perms.a, perms.b, strict=True))
    for lo, hi, e in zip(cuts[:-1], cuts[1:], ends, strict=True):
        s = starts[lo]
        block, seg, tmp = hv[s:e], starts[lo:hi] - s, buffer[: e - s]
        mins = np.empty((num_perm, hi - lo), tmp.dtype)
        for p, (a, b) in enumerate(params):
            np.multiply(block, a, out=tmp)
            tmp += b
            if perms.scheme == "mersenne":
                np.remainder(tmp, prime, out=tmp)
                tmp &= low
            np.minimum.reduceat(tmp, seg, out=mins[p])
        out[docs[lo:hi]] = mins.T
    return out


def band_keys(sig: np.ndarray, bands: int, rows: int, engine: Engine = "auto") -> np.ndarray:
    """One 64-bit key per band ``(docs, bands)`` from ``rows`` signature values each."""
    if bands * rows > sig.shape[1]:
        raise ValueError(f"{bands} bands x {rows} rows need {bands * rows} permutations")
    if _compiled(engine):
        from winnow.kernels import minhash_jit

        return minhash_jit.band_keys(np.ascontiguousarray(sig), bands, rows)
    grid = sig[:, : bands * rows].reshape(len(sig), bands, rows).astype(np.uint64)
    h = np.zeros((len(sig), bands), np.uint64)
    for j in range(rows):
        h = h * np.uint64(POLY) + grid[:, :, j]
    return fmix64(h, inplace=True)


def _compiled(engine: Engine) -> bool:
    """Whether ``engine`` means the compiled kernels (numba is imported only then)."""
    if engine == "numpy":
        return False
    from winnow.kernels import minhash_jit

    if engine == "numba" and not minhash_jit.AVAILABLE:
        raise ImportError("engine numba needs numba (pip install numba)")
    return minhash_jit.AVAILABLE


def _empty_signatures(docs: int, perms: Permutations) -> np.ndarray:
    dtype = _sig_dtype(perms.scheme)
    return np.full((docs, len(perms.a)), np.iinfo(dtype).max, dtype)


def compiled_signatures(hashes: np.ndarray, offsets: np.ndarray, perms: Permutations) -> np.ndarray:
    """``signatures`` through the compiled kernel (bit-identical)."""
    from winnow.kernels import minhash_jit

    out = _empty_signatures(len(offsets) - 1, perms)
    scheme = minhash_jit.SCHEMES[perms.scheme]
    hashes = np.ascontiguousarray(hashes, np.uint64)
    minhash_jit.hash_signatures(
        hashes, np.asarray(offsets, np.int64), perms.a, perms.b, scheme, out
    )
    return out


# ---------------------------------------------------------------------------- LSH


def candidate_probability(s: np.ndarray | float, bands: int, rows: int) -> np.ndarray:
    """P(a pair with Jaccard ``s`` shares at least one band): ``1 - (1 - s^r)^b``."""
    return 1.0 - (1.0 - np.asarray(s, float) ** rows) ** bands


@lru_cache(maxsize=64)
def lsh_params(
    threshold: float, num_perm: int, fp_weight: float = 0.5, fn_weight: float = 0.5
) -> tuple[int, int]:
    """``(bands, rows)`` with ``bands * rows <= num_perm`` minimising the weighted
    false-positive area below ``threshold`` plus false-negative area above it."""
    from scipy.integrate import quad

    best, best_err = (1, 1), float("inf")
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = quad(lambda s, b=b, r=r: candidate_probability(s, b, r), 0.0, threshold)[0]
            fn = quad(lambda s, b=b, r=r: 1 - candidate_probability(s, b, r), threshold, 1.0)[0]
            err = fp * fp_weight + fn * fn_weight
            if err < best_err:
                best, best_err = (b, r), err
    return best


# ------------------------------------------------------------------------- hasher


@dataclass(frozen=True)
class MinHasher:
    """Text -> shingle hashes -> signatures, for one fixed configuration."""

    num_perm: int = 112
    seed: int = 1
    ngram: int = 5
    unit: Unit = "word"
    norm: TextNorm = field(default_factory=TextNorm)
    hash: HashName = "fast"
    scheme: Scheme = "affine32"
    engine: Engine = "auto"

    @cached_property
    def perms(self) -> Permutations:
        return permutations(self.num_perm, self.seed, self.scheme)

    @property
    def _hash_bytes(self) -> int:
        return 8 if self.scheme == "affine64" else 4

    def shingle_hashes(self, texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """64-bit shingle hashes of every text, with per-text offsets."""
        if self.hash == "sha1":
            strings = self.shingle_strings(texts)
            flat = [s.encode() for doc in strings for s in doc]
            nbytes = self._hash_bytes
            values = np.fromiter((_sha1_int(s, nbytes) for s in flat), np.uint64, len(flat))
            return values, offsets_of(np.array([len(d) for d in strings], np.int64))
        if self.unit == "char":
            return ngram_hashes(*char_hashes(texts, self.norm), self.ngram)
        words = compiled_word_hashes if _compiled(self.engine) else word_hashes
        return ngram_hashes(*words(texts, self.norm), self.ngram)

    def shingle_strings(self, texts: pa.Array) -> list[list[str]]:
        """The shingles as strings (slow: for compatibility and inspection)."""
        out = []
        for text in normalize(texts, self.norm).to_pylist():
            out.append(shingles_py(text, self.ngram, self.unit, _IDENTITY))
        return out

    def signatures(self, texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """``(signatures (docs, num_perm), shingle count per doc)``."""
        if not _compiled(self.engine):
            hashes, offsets = self.shingle_hashes(texts)
            return signatures(hashes, offsets, self.perms), np.diff(offsets)
        if self.hash == "fast" and self.unit == "word":
            from winnow.kernels import minhash_jit

            words, offsets = compiled_word_hashes(texts, self.norm)
            out = _empty_signatures(len(offsets) - 1, self.perms)
            a, b, scheme = self.perms.a, self.perms.b, minhash_jit.SCHEMES[self.scheme]
            minhash_jit.shingle_signatures(words, offsets, self.ngram, a, b, scheme, out)
            return out, shingle_counts(offsets, self.ngram)
        hashes, offsets = self.shingle_hashes(texts)
        return compiled_signatures(hashes, offsets, self.perms), np.diff(offsets)

    def hashfunc(self) -> Callable[[bytes], int]:
        """The per-shingle hash to give ``datasketch.MinHash(hashfunc=...)`` so that it
        produces the same signatures from ``shingle_strings``."""
        nbytes = self._hash_bytes
        if self.hash == "sha1":
            return lambda data: _sha1_int(data, nbytes)
        mask, unit = (1 << (8 * nbytes)) - 1, self.unit
        return lambda data: shingle_hash_py(data, unit) & mask


_IDENTITY = TextNorm(False, False, False, False, False)


def _sha1_int(data: bytes, nbytes: int) -> int:
    return int.from_bytes(hashlib.sha1(data).digest()[:nbytes], "little")
