"""Compiled (numba) twins of the MinHash hot loops in ``winnow.kernels.minhash``.

Bit-identical to the numpy reference by construction (same integer arithmetic mod
2^32 / 2^64, same order of operations) and by test (tests/test_minhash_jit.py):

* ``ascii_words``: one pass over the UTF-8 bytes of a batch that cuts tokens at ASCII
  whitespace and turns every pure-ASCII token into its normalised words' hashes
  (lowercase, the digit rule, punctuation as separators: the byte tables of the
  numpy path) with no dictionary encode; tokens with non-ASCII bytes are left as
  references for the Unicode-aware Arrow path, and ``splice`` puts their words back.
* ``shingle_signatures``: rolling word n-grams, the murmur3 finaliser, the
  permutation scheme and the per-document minimum in one loop per document, the
  permutations innermost (SIMD), so no shingle array is ever materialised.
* ``hash_signatures``: the same from given 64-bit shingle hashes (sha1 mode, chars).
* ``band_keys``: the rolling fold of ``rows`` values per band, then the finaliser.

``AVAILABLE`` is False when numba is missing; callers then use the numpy path.
Functions are compiled on first use and cached on disk (``cache=True``).
"""

from __future__ import annotations

import numpy as np

try:
    import numba
except ImportError:  # pragma: no cover - numba is a core dependency
    numba = None

AVAILABLE = numba is not None

SCHEMES = {"affine32": 0, "affine64": 1, "mersenne": 2}

_U = np.uint64
_M1, _M2 = _U(0xFF51AFD7ED558CCD), _U(0xC4CEB9FE1A85EC53)
_S33 = _U(33)
_POLY = _U(0x9E3779B97F4A7C15)
_P61 = _U((1 << 61) - 1)
_LOW32 = _U(0xFFFFFFFF)


def _jit(fn):
    return numba.njit(cache=True, nogil=True, boundscheck=False)(fn) if AVAILABLE else fn


@_jit
def _fmix64(x):
    x ^= x >> _S33
    x *= _M1
    x ^= x >> _S33
    x *= _M2
    return x ^ (x >> _S33)


@_jit
def _fmix32(x):
    """murmur3's 32-bit finaliser on a value < 2^32 held in a uint64."""
    x ^= x >> _U(16)
    x = (x * _U(0x85EBCA6B)) & _LOW32
    x ^= x >> _U(13)
    x = (x * _U(0xC2B2AE35)) & _LOW32
    return x ^ (x >> _U(16))


@_jit
def _weight(weights, j, salt):
    """The word hash's byte weight at position ``j``: ``fmix64(j + salt)``, from the
    table while it lasts."""
    return weights[j] if j < len(weights) else _fmix64(_U(j) + salt)


WORD, SEP, SPACE, DIGIT, OTHER = 0, 1, 2, 3, 4
"""Byte classes of ``ascii_words``: part of a word, separator inside a token, ASCII
whitespace (ends a token), digit (under the digit rule), non-ASCII byte."""


@_jit
def ascii_words(data, offsets, classes, values, weights, salt, len_mult):
    """Words of every document as ``(items, refs, doc_items, tok_starts, tok_ends)``.

    ``classes`` gives each byte's class, ``values`` its lowercased value + 1.
    ``items[i]`` is a word hash where ``refs[i] < 0``, else a placeholder for the
    non-ASCII token ``refs[i]`` (bytes ``tok_starts[k]:tok_ends[k]``); documents own
    ``items[doc_items[d]:doc_items[d + 1]]``. One pass: a token's words are dropped
    again when a non-ASCII byte turns up in it.
    """
    n_docs = len(offsets) - 1
    n = len(data)
    items = np.empty(n // 2 + n_docs + 1, np.uint64)
    refs = np.empty(len(items), np.int64)
    doc_items = np.zeros(n_docs + 1, np.int64)
    tok_starts = np.empty(n // 2 + 1, np.int64)
    tok_ends = np.empty(n // 2 + 1, np.int64)
    k = 0
    n_special = 0
    for d in range(n_docs):
        i, end = offsets[d], offsets[d + 1]
        tok_start, tok_k = i, k
        h, length = _U(0), 0
        while i < end:
            c = data[i]
            t = classes[c]
            if t == WORD:
                h += values[c] * _weight(weights, length, salt)
                length += 1
                i += 1
                continue
            if t == DIGIT:  # \d+(?:[.,]\d+)? becomes one "0"
                i += 1
                while i < end and classes[data[i]] == DIGIT:
                    i += 1
                if i + 1 < end and (data[i] == 46 or data[i] == 44):
                    if classes[data[i + 1]] == DIGIT:
                        i += 2
                        while i < end and classes[data[i]] == DIGIT:
                            i += 1
                h += _U(49) * _weight(weights, length, salt)
                length += 1
                continue
            if length:
                items[k], refs[k] = _fmix64(h + _U(length) * len_mult), -1
                k += 1
                h, length = _U(0), 0
            if t == OTHER:  # back to the token's start: the Arrow path takes it whole
                k = tok_k
                while i < end and classes[data[i]] != SPACE:
                    i += 1
                tok_starts[n_special], tok_ends[n_special] = tok_start, i
                items[k], refs[k] = _U(0), n_special
                n_special += 1
                k += 1
                continue
            i += 1
            if t == SPACE:
                tok_start, tok_k = i, k
        if length:
            items[k], refs[k] = _fmix64(h + _U(length) * len_mult), -1
            k += 1
        doc_items[d + 1] = k
    return items[:k], refs[:k], doc_items, tok_starts[:n_special], tok_ends[:n_special]


@_jit
def splice(items, refs, doc_items, token_index, sub_hash, sub_start, sub_count):
    """Word hashes and per-document offsets, each placeholder replaced by its token's
    words (``token_index[k]``: the unique token of reference ``k``)."""
    total = 0
    for i in range(len(items)):
        total += 1 if refs[i] < 0 else sub_count[token_index[refs[i]]]
    out = np.empty(total, np.uint64)
    offsets = np.zeros(len(doc_items), np.int64)
    k = 0
    for d in range(len(doc_items) - 1):
        for i in range(doc_items[d], doc_items[d + 1]):
            if refs[i] < 0:
                out[k] = items[i]
                k += 1
            else:
                u = token_index[refs[i]]
                for w in range(sub_start[u], sub_start[u] + sub_count[u]):
                    out[k] = sub_hash[w]
                    k += 1
        offsets[d + 1] = k
    return out, offsets


@_jit
def _prepare(x, scheme):
    """The scheme's input transform of a 64-bit shingle hash."""
    if scheme == 0:
        return _fmix32(x & _LOW32)
    if scheme == 1:
        return _fmix64(x)
    return x & _LOW32


@_jit
def _fold(hv, count, a, b, mins, scheme):
    """Fold ``count`` transformed hashes into ``mins``, four shingles per pass over the
    permutations so each permutation's ``a``, ``b`` and minimum are loaded once per four."""
    s = 0
    if scheme == 0:
        h32 = hv[:count].astype(np.uint32)
        while s + 4 <= count:
            h0, h1, h2, h3 = h32[s], h32[s + 1], h32[s + 2], h32[s + 3]
            for p in range(len(a)):
                ap, bp = a[p], b[p]
                v = min(np.uint32(ap * h0 + bp), np.uint32(ap * h1 + bp))
                v = min(v, np.uint32(ap * h2 + bp), np.uint32(ap * h3 + bp))
                mins[p] = min(mins[p], v)
            s += 4
        for t in range(s, count):
            for p in range(len(a)):
                mins[p] = min(mins[p], np.uint32(a[p] * h32[t] + b[p]))
    elif scheme == 1:
        for t in range(count):
            h = hv[t]
            for p in range(len(a)):
                mins[p] = min(mins[p], a[p] * h + b[p])
    else:
        for t in range(count):
            h = hv[t]
            for p in range(len(a)):
                mins[p] = min(mins[p], ((a[p] * h + b[p]) % _P61) & _LOW32)


@_jit
def _longest(offsets):
    """The most items of any document (at least 1)."""
    longest = 1
    for d in range(len(offsets) - 1):
        longest = max(longest, offsets[d + 1] - offsets[d])
    return longest


@_jit
def shingle_signatures(words, offsets, n, a, b, scheme, out):
    """Signatures of word n-gram shingles into ``out`` (docs, num_perm), pre-filled
    with the maximum; a document with fewer than ``n`` words has one shingle."""
    hv = np.empty(_longest(offsets), np.uint64)
    for d in range(len(offsets) - 1):
        lo, hi = offsets[d], offsets[d + 1]
        if hi == lo:
            continue
        last = max(hi - n + 1, lo + 1)
        for s in range(lo, last):
            h = words[s]
            for t in range(s + 1, min(s + n, hi)):
                h = h * _POLY + words[t]
            hv[s - lo] = _prepare(_fmix64(h), scheme)
        _fold(hv, last - lo, a, b, out[d], scheme)


@_jit
def hash_signatures(hashes, offsets, a, b, scheme, out):
    """Signatures from given 64-bit shingle hashes into ``out`` (docs, num_perm)."""
    hv = np.empty(_longest(offsets), np.uint64)
    for d in range(len(offsets) - 1):
        lo, hi = offsets[d], offsets[d + 1]
        for s in range(lo, hi):
            hv[s - lo] = _prepare(hashes[s], scheme)
        _fold(hv, hi - lo, a, b, out[d], scheme)


@_jit
def band_keys(sig, bands, rows):
    """One 64-bit key per band: ``h = h * POLY + v`` over the band's values, finalised."""
    out = np.empty((sig.shape[0], bands), np.uint64)
    for d in range(sig.shape[0]):
        for band in range(bands):
            h = _U(0)
            for j in range(band * rows, band * rows + rows):
                h = h * _POLY + _U(sig[d, j])
            out[d, band] = _fmix64(h)
    return out
