"""The compiled MinHash path: bit-identical to the numpy reference (and through it to the
Python twins and datasketch) on real, adversarial and random text."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest
from datasketch import MinHash
from test_minhash import TRICKY

from winnow.kernels.minhash import (
    MinHasher,
    TextNorm,
    band_keys,
    compiled_signatures,
    compiled_word_hashes,
    hash_bytes_py,
    normalize_py,
    permutations,
    shingles_py,
    signatures,
    word_hashes,
)
from winnow.sample_text import real_documents
from winnow.tokenize_engines import ADVERSARIAL, random_strings

NORMS = [
    TextNorm(),
    TextNorm(False, False, False, False, False),
    TextNorm(punctuation=False),
    TextNorm(lowercase=False, diacritics=False),
    TextNorm(digits=False),
]


def digit_soup(n: int, seed: int = 0) -> list[str]:
    """ASCII strings dense in the digit rule's corner cases (runs, ``.``/``,`` joins,
    punctuation, separators inside tokens), with an occasional non-ASCII letter."""
    rng = random.Random(seed)
    alphabet = "0123456789..,,--aAbZ_  \t\n\x1c\x1f'!é"
    return ["".join(rng.choices(alphabet, k=rng.randint(0, 80))) for _ in range(n)]


@pytest.fixture(scope="module")
def texts() -> list[str]:
    docs = [d["text"] for d in real_documents(200)]
    extra = ["1.2.3 a1.5b 1,2,3,4 x9.y 3. .5 1..2", "ÀB1.5 ünï 12.3.4 Ｆｕｌｌ ①", "a" * 3000]
    return docs + TRICKY + list(ADVERSARIAL) + extra + random_strings(200) + digit_soup(400)


@pytest.mark.parametrize("norm", NORMS)
def test_word_hashes_identical_to_numpy(texts, norm):
    ref = word_hashes(pa.array(texts), norm)
    got = compiled_word_hashes(pa.array(texts), norm)
    assert np.array_equal(got[1], ref[1])
    assert np.array_equal(got[0], ref[0])


def test_word_hashes_match_python_twin(texts):
    """Independent of the numpy path: the plain-Python normaliser and byte hash."""
    sample = texts[200:]  # the adversarial and random part
    hashes, offsets = compiled_word_hashes(pa.array(sample))
    for i, text in enumerate(sample):
        expect = [hash_bytes_py(w.encode()) for w in normalize_py(text).split()]
        assert hashes[offsets[i] : offsets[i + 1]].tolist() == expect, text


@pytest.mark.parametrize("scheme", ["affine32", "affine64", "mersenne"])
@pytest.mark.parametrize("ngram", [1, 3, 5])
def test_signatures_identical_to_numpy(texts, scheme, ngram):
    arr = pa.array(texts + ["", None, "one", "two words"])
    kw = dict(num_perm=48, seed=3, ngram=ngram, scheme=scheme)
    ref_sig, ref_count = MinHasher(**kw, engine="numpy").signatures(arr)
    sig, count = MinHasher(**kw, engine="numba").signatures(arr)
    assert sig.dtype == ref_sig.dtype and np.array_equal(count, ref_count)
    assert np.array_equal(sig, ref_sig)
    assert np.array_equal(band_keys(sig, 8, 6, "numba"), band_keys(ref_sig, 8, 6, "numpy"))


@pytest.mark.parametrize("scheme", ["affine32", "affine64", "mersenne"])
def test_hash_signatures_identical_to_numpy(scheme):
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 40, 300)
    counts[:5] = 0
    offsets = np.concatenate([[0], np.cumsum(counts)])
    hashes = rng.integers(0, 2**64, offsets[-1], dtype=np.uint64)
    hashes[:50] = [0, 2**64 - 1, 2**32 - 1, 2**32, 2**61 - 1, 2**61] * 8 + [1, 2]
    perms = permutations(64, 11, scheme)
    assert np.array_equal(
        compiled_signatures(hashes, offsets, perms), signatures(hashes, offsets, perms)
    )


@pytest.mark.parametrize("unit,hash_name", [("char", "fast"), ("word", "sha1")])
def test_other_modes_use_the_compiled_signature_step(texts, unit, hash_name):
    kw = dict(num_perm=32, seed=5, unit=unit, hash=hash_name, ngram=4)
    arr = pa.array(texts[200:320])
    ref = MinHasher(**kw, engine="numpy").signatures(arr)
    got = MinHasher(**kw, engine="numba").signatures(arr)
    assert np.array_equal(got[0], ref[0]) and np.array_equal(got[1], ref[1])


def test_datasketch_compatible_mode(texts):
    """sha1 + mersenne (datasketch's ``legacy``) through the compiled kernel, checked
    against datasketch itself."""
    sample = texts[200:240]
    hasher = MinHasher(num_perm=64, seed=2, hash="sha1", scheme="mersenne", engine="numba")
    sig, _ = hasher.signatures(pa.array(sample))
    for row, text in zip(sig, sample, strict=True):
        ref = MinHash(num_perm=64, seed=2, scheme="legacy")
        ref.update_batch([s.encode() for s in shingles_py(text)])
        assert np.array_equal(ref.hashvalues, row)
