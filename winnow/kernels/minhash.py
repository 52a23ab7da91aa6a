"""MinHash over whole Arrow batches: normalise, shingle, sign, band.

Everything here is a pure function of its inputs (no files, no global state), so the
local DuckDB backend and a Spark ``mapInArrow`` share it. The hot path has no Python
loop per shingle:

1. **Words.** Split raw text on ASCII whitespace and dictionary-encode the tokens.
   Normalisation (lowercase, digits -> ``0``, punctuation and symbols -> space,
   strip diacritics) is applied to the *unique* tokens only; every step is local to
   a token, so this equals normalising the full text and splitting it. Each unique
   word is hashed once (xxh3-64).
2. **Shingles.** Word n-grams are combined with a rolling polynomial over the word
   hashes (``h = h * M + w`` mod 2^64, then the murmur3 finaliser), ``n`` vector ops
   per batch. A document with fewer than ``n`` words gives one shingle of all its
   words; one with no words gives none. Character n-grams work the same way over
   code points of the normalised text.
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

``normalize_py``, ``shingles_py`` and ``shingle_hash_py`` are the plain-Python
reference twins used by tests. They differ from the Arrow path only where Python's
``str.lower`` is context-aware (final sigma, dotted capital I).
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

Unit = Literal["word", "char"]
Scheme = Literal["affine32", "affine64", "mersenne"]
HashName = Literal["xxh3", "sha1"]

MASK32 = (1 << 32) - 1
MASK64 = (1 << 64) - 1
MERSENNE61 = (1 << 61) - 1
_POLY = 0x9E3779B97F4A7C15  # odd multiplier of the rolling n-gram combine
_CHAR_SALT = 0x243F6A8885A308D3  # keeps code point 0 from hashing to 0
_BLOCK = 1 << 16  # shingles per signature block: ~256 KiB of uint32, stays in L2

# RE2 patterns (Arrow) and their Python twins.
_DIGITS = r"\p{Nd}+(?:[.,،٫⎖⎗⎘]\p{Nd}+)?"
_PUNCT = r"[\p{P}\p{S}\p{Cc}]"
_SPACE = r"[\s\x0b\x1c-\x1f\x85\p{Z}]+"
_PY_DIGITS = r"\d+(?:[.,،٫⎖⎗⎘]\d+)?"  # Python's str-pattern \d is Unicode Nd


@dataclass(frozen=True)
class TextNorm:
    """datatrove-style normalisation steps, applied in this order, each switchable."""

    lowercase: bool = True
    digits: bool = True  # every run of digits (with one decimal part) becomes "0"
    punctuation: bool = True  # Unicode P*, S* and control characters become spaces
    diacritics: bool = True  # NFD, then drop combining marks (Mn)
    whitespace: bool = True  # collapse whitespace runs to one space and trim


# --------------------------------------------------------------------------- mixing


def fmix64(x: np.ndarray) -> np.ndarray:
    """murmur3's 64-bit finaliser (a bijection), element-wise on uint64."""
    x = x ^ (x >> np.uint64(33))
    x = x * np.uint64(0xFF51AFD7ED558CCD)
    x = x ^ (x >> np.uint64(33))
    x = x * np.uint64(0xC4CEB9FE1A85EC53)
    return x ^ (x >> np.uint64(33))


def fmix32(x: np.ndarray) -> np.ndarray:
    """murmur3's 32-bit finaliser, element-wise on uint32."""
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(0x85EBCA6B)
    x = x ^ (x >> np.uint32(13))
    x = x * np.uint32(0xC2B2AE35)
    return x ^ (x >> np.uint32(16))


def _fmix64_py(x: int) -> int:
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & MASK64
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & MASK64
    return x ^ (x >> 33)


# ----------------------------------------------------------------------- normalise


def _as_string_array(texts: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if pa.types.is_large_string(texts.type):
        texts = texts.cast(pa.string())
    return pc.fill_null(texts, "")


def _normalize_chars(texts: pa.Array, norm: TextNorm) -> pa.Array:
    """Every step except whitespace collapsing (all are local to a token)."""
    if norm.lowercase:
        texts = pc.utf8_lower(texts)
    if norm.digits:
        texts = pc.replace_substring_regex(texts, _DIGITS, "0")
    if norm.punctuation:
        texts = pc.replace_substring_regex(texts, _PUNCT, " ")
    if norm.diacritics:
        texts = pc.replace_substring_regex(pc.utf8_normalize(texts, "NFD"), r"\p{Mn}+", "")
    return texts


def normalize(texts: pa.Array | pa.ChunkedArray, norm: TextNorm = TextNorm()) -> pa.Array:
    """Normalised texts (nulls become empty strings), vectorised with Arrow."""
    texts = _normalize_chars(_as_string_array(texts), norm)
    if norm.whitespace:
        texts = pc.utf8_trim_whitespace(pc.replace_substring_regex(texts, _SPACE, " "))
    return texts


def normalize_py(text: str, norm: TextNorm = TextNorm()) -> str:
    """Reference twin of ``normalize`` for one string, in plain Python."""
    import re

    if norm.lowercase:
        text = text.lower()
    if norm.digits:
        text = re.sub(_PY_DIGITS, "0", text)
    if norm.punctuation:
        text = "".join(
            " " if unicodedata.category(c)[0] in "PS" or unicodedata.category(c) == "Cc" else c
            for c in text
        )
    if norm.diacritics:
        nfd = unicodedata.normalize("NFD", text)
        text = "".join(c for c in nfd if unicodedata.category(c) != "Mn")
    if norm.whitespace:
        text = " ".join(text.split())
    return text


# -------------------------------------------------------------------------- tokens


def _offsets(lengths: np.ndarray) -> np.ndarray:
    out = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


def _hash_strings(values: pa.Array) -> np.ndarray:
    """xxh3-64 of each string (a Python call per *unique* token, not per shingle)."""
    data = values.cast(pa.binary()).to_pylist()
    return np.fromiter((xxhash.xxh3_64_intdigest(v) for v in data), np.uint64, len(data))


def word_hashes(texts: pa.Array, norm: TextNorm = TextNorm()) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of the normalised words of every text, with per-text offsets."""
    texts = _as_string_array(texts)
    tokens = pc.ascii_split_whitespace(texts)
    tok_offsets = _offsets(pc.list_value_length(tokens).to_numpy(zero_copy_only=False))
    encoded = pc.dictionary_encode(tokens.flatten())
    index = encoded.indices.to_numpy(zero_copy_only=False)

    # Normalise the unique tokens; one may become several words or none ("--").
    parts = pc.split_pattern_regex(_normalize_chars(encoded.dictionary, norm), _SPACE)
    words = parts.flatten()
    keep = pc.greater(pc.binary_length(words), 0)
    owner = pc.filter(pc.list_parent_indices(parts), keep).to_numpy(zero_copy_only=False)
    sub_hash = _hash_strings(pc.filter(words, keep))
    sub_count = np.bincount(owner, minlength=len(encoded.dictionary)).astype(np.int64)
    sub_start = _offsets(sub_count)[:-1]

    per_token = sub_count[index]
    if (per_token == 1).all():
        hashes = sub_hash[sub_start[index]]
    else:
        first = _offsets(per_token)
        within = np.arange(first[-1]) - np.repeat(first[:-1], per_token)
        hashes = sub_hash[np.repeat(sub_start[index], per_token) + within]
    word_offsets = _offsets(per_token)[tok_offsets]
    return hashes, word_offsets


def char_hashes(texts: pa.Array, norm: TextNorm = TextNorm()) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of the code points of every normalised text, with per-text offsets."""
    normed = normalize(texts, norm)
    lengths = pc.utf8_length(normed).to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = np.frombuffer(normed.buffers()[1], np.int32)[normed.offset :][: len(normed) + 1]
    raw = normed.buffers()[2].to_pybytes()[offsets[0] : offsets[-1]] if len(normed) else b""
    points = np.frombuffer(raw.decode("utf-8").encode("utf-32-le"), np.uint32)
    return fmix64(points.astype(np.uint64) + np.uint64(_CHAR_SALT)), _offsets(lengths)


def ngram_hashes(
    tokens: np.ndarray, offsets: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rolling n-gram hashes of token hashes, per document (short docs: one shingle)."""
    lengths = np.diff(offsets)
    count = np.where(lengths >= n, lengths - n + 1, (lengths > 0).astype(np.int64))
    sh_offsets = _offsets(count)
    start = np.repeat(offsets[:-1] - sh_offsets[:-1], count) + np.arange(sh_offsets[-1])
    width = np.repeat(np.minimum(lengths, n), count)
    h = tokens[start]
    mult = np.uint64(_POLY)
    full = bool((width == n).all())
    for k in range(1, n):
        if full:
            h = h * mult + tokens[start + k]
        else:
            sel = np.flatnonzero(width > k)
            h[sel] = h[sel] * mult + tokens[start[sel] + k]
    return fmix64(h), sh_offsets


def shingles_py(
    text: str, ngram: int = 5, unit: Unit = "word", norm: TextNorm = TextNorm()
) -> list[str]:
    """Reference twin: the shingle strings of one text (words joined by one space)."""
    text = normalize_py(text, norm)
    items: list[str] = text.split() if unit == "word" else list(text)
    joiner = " " if unit == "word" else ""
    if not items:
        return []
    if len(items) < ngram:
        return [joiner.join(items)]
    return [joiner.join(items[i : i + ngram]) for i in range(len(items) - ngram + 1)]


def shingle_hash_py(shingle: str | bytes, unit: Unit = "word") -> int:
    """Reference twin of the vectorised 64-bit shingle hash, for one shingle string."""
    if isinstance(shingle, bytes):
        shingle = shingle.decode("utf-8")
    if unit == "word":
        tokens = [xxhash.xxh3_64_intdigest(w.encode()) for w in shingle.split(" ")]
    else:
        tokens = [_fmix64_py((ord(c) + _CHAR_SALT) & MASK64) for c in shingle]
    h = tokens[0]
    for t in tokens[1:]:
        h = (h * _POLY + t) & MASK64
    return _fmix64_py(h)


def _sha1_int(data: bytes, nbytes: int) -> int:
    return int.from_bytes(hashlib.sha1(data).digest()[:nbytes], "little")


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
        hv = fmix32(hashes.astype(np.uint32))
    elif perms.scheme == "affine64":
        hv = fmix64(hashes)
    else:
        hv = hashes & np.uint64(MASK32)
    # Blocks of whole documents holding about _BLOCK shingles each.
    starts = offsets[docs]
    cuts = np.searchsorted(starts, np.arange(0, offsets[-1], _BLOCK), side="left")
    cuts = np.unique(np.append(cuts, len(docs)))
    prime, low = np.uint64(MERSENNE61), np.uint64(MASK32)
    for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
        s, e = starts[lo], offsets[docs[hi - 1] + 1]
        block, seg = hv[s:e], starts[lo:hi] - s
        tmp = np.empty(e - s, hv.dtype)
        mins = np.empty((num_perm, hi - lo), dtype)
        for p in range(num_perm):
            np.multiply(block, perms.a[p], out=tmp)
            tmp += perms.b[p]
            if perms.scheme == "mersenne":
                np.remainder(tmp, prime, out=tmp)
                tmp &= low
            mins[p] = np.minimum.reduceat(tmp, seg)
        out[docs[lo:hi]] = mins.T
    return out


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One 64-bit key per band ``(docs, bands)`` from ``rows`` signature values each."""
    if bands * rows > sig.shape[1]:
        raise ValueError(f"{bands} bands x {rows} rows need {bands * rows} permutations")
    grid = sig[:, : bands * rows].reshape(len(sig), bands, rows).astype(np.uint64)
    h = np.zeros((len(sig), bands), np.uint64)
    for j in range(rows):
        h = h * np.uint64(_POLY) + grid[:, :, j]
    return fmix64(h)


# ---------------------------------------------------------------------------- LSH


def candidate_probability(s: np.ndarray | float, bands: int, rows: int) -> np.ndarray:
    """P(a pair with Jaccard ``s`` shares at least one band): ``1 - (1 - s^r)^b``."""
    return 1.0 - (1.0 - np.asarray(s, float) ** rows) ** bands


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
    hash: HashName = "xxh3"
    scheme: Scheme = "affine32"

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
            return values, _offsets(np.array([len(d) for d in strings], np.int64))
        tokens = word_hashes if self.unit == "word" else char_hashes
        return ngram_hashes(*tokens(texts, self.norm), self.ngram)

    def shingle_strings(self, texts: pa.Array) -> list[list[str]]:
        """The shingles as strings (slow: for compatibility and inspection)."""
        out = []
        for text in normalize(texts, self.norm).to_pylist():
            out.append(shingles_py(text, self.ngram, self.unit, _IDENTITY))
        return out

    def signatures(self, texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """``(signatures (docs, num_perm), shingle count per doc)``."""
        hashes, offsets = self.shingle_hashes(texts)
        return signatures(hashes, offsets, self.perms), np.diff(offsets)

    def hashfunc(self) -> Callable[[bytes], int]:
        """The per-shingle hash to give ``datasketch.MinHash(hashfunc=...)`` so that it
        produces the same signatures from ``shingle_strings``."""
        nbytes = self._hash_bytes
        if self.hash == "sha1":
            return lambda data: _sha1_int(data, nbytes)
        mask, unit = (1 << (8 * nbytes)) - 1, self.unit
        return lambda data: shingle_hash_py(data, unit) & mask


_IDENTITY = TextNorm(False, False, False, False, False)
