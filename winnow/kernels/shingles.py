"""Text -> normalised words -> shingle hashes, over whole Arrow batches (MinHash's
first two steps; ``winnow.kernels.minhash`` signs and bands them).

Everything here is a pure function of its inputs (no files, no global state). The
hot path has no Python loop per shingle:

1. **Words.** Cut raw text at ASCII whitespace (numpy, zero-copy) and
   dictionary-encode the tokens. Normalisation (lowercase, digits -> ``0``,
   punctuation and symbols -> space, strip diacritics) is applied to the *unique*
   tokens only; every step is local to a token, so this equals normalising the full
   text and splitting it. Pure-ASCII tokens use byte tables; the rest use Arrow's
   Unicode kernels. Each unique word is hashed once, by a vectorised byte hash
   (``hash_bytes``). ``compiled_word_hashes`` gives the same hashes with the ASCII
   tokens done in one compiled pass over the bytes (``minhash_jit.ascii_words``).
2. **Shingles.** Word n-grams are combined with a rolling polynomial over the word
   hashes (``h = h * M + w`` mod 2^64, then the murmur3 finaliser), ``n`` vector ops
   per batch. A document with fewer than ``n`` words gives one shingle of all its
   words; one with no words gives none. Character n-grams work the same way over
   code points of the normalised text.

``normalize_py``, ``shingles_py`` and ``shingle_hash_py`` are the plain-Python
reference twins used by tests. They differ from the Arrow path only where Python's
``str.lower`` is context-aware (final sigma, dotted capital I).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

Unit = Literal["word", "char"]

MASK64 = (1 << 64) - 1
POLY = 0x9E3779B97F4A7C15  # odd multiplier of the rolling n-gram combine
_CHAR_SALT = 0x243F6A8885A308D3  # keeps code point 0 from hashing to 0
_WORD_SALT = 0x13198A2E03707344  # seeds the per-position byte weights of the word hash
_LEN_MULT = 0xA4093822299F31D1  # mixes the length into the word hash
_CHUNK = 1 << 16  # elements per chunk of element-wise passes (512 KiB of uint64)

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


def _fmix(x: np.ndarray, shifts: tuple[int, int, int], mults: tuple[int, int]) -> np.ndarray:
    """murmur3's finaliser, in place, on a uint32 or uint64 array that the caller owns.
    All seven steps run on one cache-sized chunk before the next: big arrays would
    otherwise go through memory seven times, and need as big a temporary."""
    if x.flags.c_contiguous:
        flat = x.reshape(-1)  # a view
        chunks = [flat[lo : lo + _CHUNK] for lo in range(0, flat.size, _CHUNK)]
    else:
        chunks = [x]
    t = np.empty(max((c.size for c in chunks), default=0), x.dtype)
    for c in chunks:
        u = t[: c.size].reshape(c.shape)
        for i, shift in enumerate(shifts):
            np.right_shift(c, x.dtype.type(shift), out=u)
            c ^= u
            if i < 2:
                c *= x.dtype.type(mults[i])
    return x


def fmix64(x: np.ndarray, inplace: bool = False) -> np.ndarray:
    """murmur3's 64-bit finaliser (a bijection), element-wise on uint64."""
    x = x if inplace else np.array(x, np.uint64)
    return _fmix(x, (33, 33, 33), (0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53))


def fmix32(x: np.ndarray, inplace: bool = False) -> np.ndarray:
    """murmur3's 32-bit finaliser, element-wise on uint32."""
    x = x if inplace else np.array(x, np.uint32)
    return _fmix(x, (16, 13, 16), (0x85EBCA6B, 0xC2B2AE35))


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


def offsets_of(lengths: np.ndarray) -> np.ndarray:
    """Offsets ``[0, l0, l0 + l1, ...]`` from lengths."""
    out = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


def _utf8(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The bytes and 0-based int64 offsets of a null-free string array (zero-copy)."""
    width = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    _, offs_buf, data_buf = arr.buffers()
    offs = np.frombuffer(offs_buf, width)[arr.offset : arr.offset + len(arr) + 1]
    offs = offs.astype(np.int64) if len(offs) else np.zeros(1, np.int64)
    data = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    return data[offs[0] : offs[-1]], offs - offs[0]


_weight_cache = np.zeros(0, np.uint64)


def _weights(n: int) -> np.ndarray:
    """Per-position byte weights of the word hash: ``fmix64(j + SALT)``."""
    global _weight_cache
    if len(_weight_cache) < n:
        size = max(n, 2 * len(_weight_cache), 64)
        _weight_cache = fmix64(np.arange(size, dtype=np.uint64) + np.uint64(_WORD_SALT))
    return _weight_cache[:n]


def hash_bytes(data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """64-bit hash of each byte string ``data[offsets[i]:offsets[i+1]]``, vectorised:
    ``fmix64(sum_j (b_j + 1) * W_j + len * LEN)`` mod 2^64, ``W_j`` pseudo-random."""
    lengths = np.diff(offsets)
    if not len(data):
        return fmix64(lengths.astype(np.uint64) * np.uint64(_LEN_MULT))
    pos = np.arange(len(data)) - np.repeat(offsets[:-1], lengths)
    terms = (data.astype(np.uint64) + np.uint64(1)) * _weights(int(lengths.max()))[pos]
    total = np.zeros(len(data) + 1, np.uint64)
    np.cumsum(terms, out=total[1:])
    h = total[offsets[1:]] - total[offsets[:-1]]
    return fmix64(h + lengths.astype(np.uint64) * np.uint64(_LEN_MULT), inplace=True)


def hash_bytes_py(data: bytes) -> int:
    """Reference twin of ``hash_bytes`` for one byte string."""
    h = len(data) * _LEN_MULT
    for j, byte in enumerate(data):
        h += (byte + 1) * _fmix64_py((j + _WORD_SALT) & MASK64)
    return _fmix64_py(h & MASK64)


# ASCII byte tables: lowercase, and separators (whitespace; punctuation and controls).
_LOWER = np.arange(256, dtype=np.uint8)
_LOWER[65:91] += 32
_ASCII_SPACE = np.zeros(256, bool)
_ASCII_SPACE[[9, 10, 11, 12, 13, 32, 28, 29, 30, 31]] = True
_ASCII_PUNCT = np.array([c < 128 and not chr(c).isalnum() for c in range(256)])  # P*, S*, Cc


def _ascii_digits(data: np.ndarray, first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The digit rule on ASCII bytes: ``(byte of each replacement "0", bytes it drops)``.

    Like the regex ``\\d+(?:[.,]\\d+)?`` scanned left to right: a digit run and, when one
    ``.`` or ``,`` and another run follow, that run too become one ``0``. In a chain of
    runs joined that way, runs pair up from the left (``1.2.3`` -> ``0.0``). ``first``
    marks the first byte of every token, where no run continues.
    """
    digit = (data - np.uint8(48)) <= np.uint8(9)
    run_start = digit & first[: len(data)]
    run_start[1:] |= digit[1:] & ~digit[:-1]
    runs = np.flatnonzero(run_start)
    drop = digit & ~run_start
    # A run is joined to the previous one by the byte before it: "." or ",", in the
    # same token, after a digit; it is absorbed when that run is not absorbed itself.
    joined = runs >= 2
    before = np.maximum(runs - 1, 0)
    joined &= ~first[runs] & ~first[before] & ((data[before] == 46) | (data[before] == 44))
    joined &= digit[np.maximum(runs - 2, 0)]
    head = np.maximum.accumulate(np.where(joined, 0, np.arange(len(runs))))
    absorbed = joined & ((np.arange(len(runs)) - head) % 2 == 1)
    drop[runs[absorbed]] = True
    drop[runs[absorbed] - 1] = True
    return runs[~absorbed], drop


def _unique_words(uniq: pa.Array, norm: TextNorm) -> tuple[np.ndarray, np.ndarray]:
    """Normalise and split each unique raw token: ``(word hashes, words per token)``.

    Pure-ASCII tokens are done with byte tables in numpy (digits included); the others
    go through the Arrow normalisation, which is Unicode-aware.
    """
    data, offs = _utf8(uniq)
    lengths = np.diff(offs)
    special = np.zeros(len(uniq), bool)
    special[np.searchsorted(offs, np.flatnonzero(data >= 0x80), side="right") - 1] = True

    # ASCII tokens: lowercase, digit runs -> "0", then cut at separator bytes.
    first = np.zeros(len(data) + 1, bool)
    first[offs] = True
    sep = _ASCII_SPACE | _ASCII_PUNCT if norm.punctuation else _ASCII_SPACE
    word = ~sep[data]
    values = _LOWER[data] if norm.lowercase else data
    drop = None
    if norm.digits:
        zeros, drop = _ascii_digits(data, first)
        values = values.copy() if values is data else values
        values[zeros] = 48
        word |= drop  # a joining "." or "," is inside its "0"
    if special.any():
        word &= np.repeat(~special, lengths)
    kept_mask = word if drop is None else word & ~drop
    start = word & first[:-1]
    start[1:] |= word[1:] & ~word[:-1]
    kept = values[kept_mask]
    piece_start = np.flatnonzero(start[kept_mask])
    ascii_owner = np.searchsorted(offs, np.flatnonzero(start), side="right") - 1
    ascii_hash = hash_bytes(kept, np.append(piece_start, len(kept)))
    special_idx = np.flatnonzero(special)
    if not len(special_idx):
        return ascii_hash, np.bincount(ascii_owner, minlength=len(uniq)).astype(np.int64)

    # Other tokens: the full Arrow normalisation, then split on any whitespace.
    parts = pc.split_pattern_regex(_normalize_chars(uniq.take(special_idx), norm), _SPACE)
    words = parts.flatten()
    nonempty = pc.greater(pc.binary_length(words), 0)
    parent = pc.filter(pc.list_parent_indices(parts), nonempty).to_numpy(zero_copy_only=False)
    other_owner = special_idx[parent]
    other_hash = hash_bytes(*_utf8(pc.filter(words, nonempty)))

    owner = np.concatenate([ascii_owner, other_owner])
    order = np.argsort(owner, kind="stable")
    counts = np.bincount(owner, minlength=len(uniq)).astype(np.int64)
    return np.concatenate([ascii_hash, other_hash])[order], counts


def word_hashes(texts: pa.Array, norm: TextNorm = TextNorm()) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of the normalised words of every text, with per-text offsets."""
    # Raw tokens are zero-copy views of the text bytes: each runs from a non-space
    # byte after ASCII whitespace (or a document start) to the next such byte, so it
    # carries its trailing whitespace, which normalisation drops.
    data, offsets = _utf8(_as_string_array(texts))
    space = data == 32
    space |= (data - np.uint8(9)) <= np.uint8(4)  # \t \n \v \f \r
    start = ~space
    start[1:] &= space[:-1]
    start[offsets[:-1][np.diff(offsets) > 0]] = True
    starts = np.flatnonzero(start)
    bounds = pa.py_buffer(np.append(starts, len(data)))
    tokens = pa.LargeStringArray.from_buffers(len(starts), bounds, pa.py_buffer(data))
    tok_offsets = np.searchsorted(starts, offsets)
    encoded = pc.dictionary_encode(tokens)
    index = encoded.indices.to_numpy(zero_copy_only=False).astype(np.intp)  # fast gathers
    sub_hash, sub_count = _unique_words(encoded.dictionary, norm)
    sub_start = offsets_of(sub_count)[:-1]
    # Most tokens are one word: gather each token's first word, repeat by word count
    # (dropping word-less tokens), then fill in the extra words of the few others.
    first_word = np.append(sub_hash, np.uint64(0))[sub_start][index]
    per_token = sub_count[index]
    word_offsets = np.zeros(len(index) + 1, np.int64)
    np.cumsum(per_token, out=word_offsets[1:])
    if word_offsets[-1] == len(index) and (per_token == 1).all():
        return first_word, tok_offsets
    hashes = np.repeat(first_word, per_token)
    multi = np.flatnonzero(per_token > 1)
    if len(multi):
        extra = per_token[multi] - 1
        within = np.arange(extra.sum()) - np.repeat(offsets_of(extra)[:-1], extra)
        dst = np.repeat(word_offsets[multi + 1] - extra, extra) + within
        hashes[dst] = sub_hash[np.repeat(sub_start[index[multi]] + 1, extra) + within]
    return hashes, word_offsets[tok_offsets]


def char_hashes(texts: pa.Array, norm: TextNorm = TextNorm()) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of the code points of every normalised text, with per-text offsets."""
    normed = normalize(texts, norm)
    lengths = pc.utf8_length(normed).to_numpy(zero_copy_only=False).astype(np.int64)
    data, _ = _utf8(normed)
    points = np.frombuffer(data.tobytes().decode("utf-8").encode("utf-32-le"), np.uint32)
    return fmix64(points + np.uint64(_CHAR_SALT), inplace=True), offsets_of(lengths)


def shingle_counts(offsets: np.ndarray, n: int) -> np.ndarray:
    """Shingles per document from word offsets: ``len - n + 1``, one for a short doc."""
    lengths = np.diff(offsets)
    return np.where(lengths >= n, lengths - n + 1, (lengths > 0).astype(np.int64))


def ngram_hashes(tokens: np.ndarray, offsets: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Rolling n-gram hashes of token hashes, per document (short docs: one shingle)."""
    lengths, count = np.diff(offsets), shingle_counts(offsets, n)
    mult = np.uint64(POLY)
    # Roll over the whole batch with contiguous slices: window i covers tokens i..i+n-1
    # (the last n-1 windows of the batch stay partial: they are never kept). One
    # cache-sized chunk at a time; the finaliser is applied after the selection.
    total = len(tokens)
    h = np.empty(total, np.uint64)
    for lo in range(0, total, _CHUNK):
        hi = min(lo + _CHUNK, total)
        chunk = h[lo:hi]
        chunk[:] = tokens[lo:hi]
        for k in range(1, n):
            m = min(hi, total - k) - lo
            if m <= 0:
                break
            chunk[:m] *= mult
            chunk[:m] += tokens[lo + k : lo + k + m]
    # Keep the windows that end inside their document; a short document's one
    # shingle (all its words) takes the slot of its first window.
    keep = np.ones(len(tokens), bool)
    starts, ends = offsets[:-1], offsets[1:]
    for k in range(1, n):
        keep[(ends - k)[ends - k >= starts]] = False
    short = np.flatnonzero((lengths > 0) & (lengths < n))
    if len(short):
        hs = tokens[starts[short]]
        for k in range(1, n):
            sel = np.flatnonzero(lengths[short] > k)
            hs[sel] = hs[sel] * mult + tokens[starts[short][sel] + k]
        h[starts[short]] = hs
        keep[starts[short]] = True
    return fmix64(h[keep], inplace=True), offsets_of(count)


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
        tokens = [hash_bytes_py(w.encode()) for w in shingle.split(" ")]
    else:
        tokens = [_fmix64_py((ord(c) + _CHAR_SALT) & MASK64) for c in shingle]
    h = tokens[0]
    for t in tokens[1:]:
        h = (h * POLY + t) & MASK64
    return _fmix64_py(h)


@lru_cache(maxsize=32)
def _byte_classes(norm: TextNorm) -> tuple[np.ndarray, np.ndarray]:
    """``ascii_words``' byte classes and values (lowercased byte + 1) for ``norm``."""
    from winnow.kernels import minhash_jit  # numba is imported only when it is used

    classes = np.full(256, minhash_jit.WORD, np.uint8)
    classes[_ASCII_PUNCT if norm.punctuation else []] = minhash_jit.SEP
    classes[_ASCII_SPACE] = minhash_jit.SEP  # \x1c-\x1f separate words inside a token
    classes[[9, 10, 11, 12, 13, 32]] = minhash_jit.SPACE
    if norm.digits:
        classes[48:58] = minhash_jit.DIGIT
    classes[128:] = minhash_jit.OTHER
    values = (_LOWER if norm.lowercase else np.arange(256, dtype=np.uint8)) + np.uint64(1)
    return classes, values


def compiled_word_hashes(
    texts: pa.Array, norm: TextNorm = TextNorm()
) -> tuple[np.ndarray, np.ndarray]:
    """``word_hashes`` with ASCII tokens done by the compiled byte pass (bit-identical)."""
    from winnow.kernels import minhash_jit

    data, offsets = _utf8(_as_string_array(texts))
    salt, len_mult = np.uint64(_WORD_SALT), np.uint64(_LEN_MULT)
    items, refs, doc_items, starts, ends = minhash_jit.ascii_words(
        data, offsets, *_byte_classes(norm), _weights(256), salt, len_mult
    )
    if not len(starts):
        return items, doc_items
    # Tokens with non-ASCII bytes: the Arrow normalisation, once per distinct token.
    lengths = ends - starts
    tok_offsets = offsets_of(lengths)
    gather = np.arange(tok_offsets[-1]) + np.repeat(starts - tok_offsets[:-1], lengths)
    tokens = pa.LargeStringArray.from_buffers(
        len(starts), pa.py_buffer(tok_offsets), pa.py_buffer(data[gather])
    )
    encoded = pc.dictionary_encode(tokens)
    index = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    sub_hash, sub_count = _unique_words(encoded.dictionary, norm)
    sub_start = offsets_of(sub_count)[:-1]
    return minhash_jit.splice(items, refs, doc_items, index, sub_hash, sub_start, sub_count)
