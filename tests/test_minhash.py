"""MinHash kernel: datasketch bit-identity, reference twins, LSH behaviour vs brute force."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest
from datasketch import MinHash
from datasketch.lsh import _optimal_param
from scipy import sparse

from winnow.kernels import clusters
from winnow.kernels.minhash import (
    MinHasher,
    TextNorm,
    band_keys,
    candidate_probability,
    hash_bytes,
    hash_bytes_py,
    lsh_params,
    normalize,
    normalize_py,
    shingle_hash_py,
    shingles_py,
    word_hashes,
)
from winnow.sample_text import real_documents

# Unicode edge cases the Arrow path and the Python twin must agree on.
TRICKY = [
    "",
    "   ",
    "one",
    "two words",
    "Crème brûlée, naïve café — déjà vu!",
    "Price: 1,299.99 USD (or 1.5k); v2.0.1 -- ok",
    "tabs\tand\nnewlines\r\nand\u00a0nbsp\u2003em-space",
    "ÀÉÎÕÜ ÅÇ Straße ½ ² ③ ١٢٣٫٤ ४२",
    "emoji 😀 stays; symbols ©®™ ± go",
    "--- ... !!! ???",
    "CamelCase_snake-case/path.to.file:42",
    "ctrl\x07char\x1fsep\x85next",
]


@pytest.fixture(scope="module")
def texts() -> list[str]:
    docs = [d["text"] for d in real_documents(120)]
    return docs + TRICKY


def test_normalize_matches_python_twin(texts):
    for norm in (TextNorm(), TextNorm(digits=False, diacritics=False), TextNorm(False, False)):
        got = normalize(pa.array(texts), norm).to_pylist()
        assert got == [normalize_py(t, norm) for t in texts]


def test_word_path_equals_full_text_normalisation(texts):
    """Normalising unique tokens then splitting == normalising the text then splitting."""
    for norm in (TextNorm(), TextNorm(punctuation=False), TextNorm(lowercase=False, digits=False)):
        hashes, offsets = word_hashes(pa.array(texts), norm)
        for i, text in enumerate(texts):
            words = normalize_py(text, norm).split()
            expect = [hash_bytes_py(w.encode()) for w in words]
            assert hashes[offsets[i] : offsets[i + 1]].tolist() == expect, text


def test_hash_bytes_matches_twin():
    rng = random.Random(1)
    items = [b"", b"a", b"ab", bytes(range(256)), "naïve".encode()]
    items += [bytes(rng.randrange(256) for _ in range(rng.randrange(40))) for _ in range(50)]
    data = np.frombuffer(b"".join(items), np.uint8)
    offsets = np.cumsum([0] + [len(x) for x in items])
    assert hash_bytes(data, offsets).tolist() == [hash_bytes_py(x) for x in items]


@pytest.mark.parametrize("unit,ngram", [("word", 5), ("word", 1), ("char", 7)])
def test_shingle_hashes_match_twin(texts, unit, ngram):
    hasher = MinHasher(unit=unit, ngram=ngram)
    hashes, offsets = hasher.shingle_hashes(pa.array(texts))
    for i, text in enumerate(texts):
        expect = sorted(shingle_hash_py(s, unit) for s in shingles_py(text, ngram, unit))
        assert sorted(hashes[offsets[i] : offsets[i + 1]].tolist()) == expect


def test_short_and_empty_documents():
    assert shingles_py("a b", ngram=5) == ["a b"]
    assert shingles_py(" ,;; ") == []
    _, count = MinHasher().signatures(pa.array(["a b", " ,;; ", None, "1 2 3 4 5 6"]))
    assert count.tolist() == [1, 0, 0, 2]


@pytest.mark.parametrize("scheme", ["affine32", "affine64", "mersenne"])
@pytest.mark.parametrize("hash_name", ["fast", "sha1"])
@pytest.mark.parametrize("unit", ["word", "char"])
def test_signatures_bit_identical_to_datasketch(texts, scheme, hash_name, unit):
    hasher = MinHasher(num_perm=32, seed=7, unit=unit, scheme=scheme, hash=hash_name)
    sample = texts[:25] + TRICKY
    sig, _ = hasher.signatures(pa.array(sample))
    ds_scheme = "legacy" if scheme == "mersenne" else scheme
    hashfunc = None if hash_name == "sha1" else hasher.hashfunc()  # None: datasketch's sha1
    for row, text in zip(sig, sample, strict=True):
        ref = MinHash(num_perm=32, seed=7, scheme=ds_scheme, hashfunc=hashfunc)
        ref.update_batch([s.encode() for s in shingles_py(text, 5, unit)])
        assert np.array_equal(ref.hashvalues, row)


def test_default_matches_datasketch_defaults(texts):
    """sha1 + affine32 is datasketch's own default: no custom hashfunc needed."""
    sig, _ = MinHasher(num_perm=128, seed=1, hash="sha1").signatures(pa.array(texts[:5]))
    for row, text in zip(sig, texts[:5], strict=True):
        ref = MinHash()
        ref.update_batch([s.encode() for s in shingles_py(text)])
        assert np.array_equal(ref.hashvalues, row)


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.8, 0.9])
def test_lsh_params_match_datasketch(threshold):
    assert lsh_params(threshold, 64) == _optimal_param(threshold, 64, 0.5, 0.5)
    assert lsh_params(threshold, 64, 0.2, 0.8) == _optimal_param(threshold, 64, 0.2, 0.8)


def _mutate(words: list[str], rate: float, rng: random.Random) -> list[str]:
    out = []
    for w in words:
        r = rng.random()
        if r < rate / 2:
            continue  # delete
        out.append(f"x{rng.randrange(10**6)}" if r < rate else w)  # substitute
    return out


def test_candidate_probability_follows_s_curve(texts):
    """Band collisions per similarity bin follow 1-(1-s^r)^b (exact Jaccard by brute force)."""
    rng = random.Random(3)
    bases = [t.split() for t in texts[:120] if len(t.split()) >= 40][:80]
    corpus = []
    for words in bases:
        corpus.append(" ".join(words))
        corpus += [" ".join(_mutate(words, r, rng)) for r in (0.01, 0.03, 0.06, 0.1, 0.2, 0.3)]
    bands, rows = 10, 4  # a gentle curve: every bin from 0.3 to 1 is informative
    sig, _ = MinHasher(num_perm=bands * rows, seed=11).signatures(pa.array(corpus))
    keys = band_keys(sig, bands, rows)

    # Brute-force exact Jaccard over all pairs: shingle-incidence matrix products.
    sets = [set(shingles_py(t)) for t in corpus]
    vocab = {s: i for i, s in enumerate(set().union(*sets))}
    rows_idx = [i for i, s in enumerate(sets) for _ in s]
    cols_idx = [vocab[x] for s in sets for x in s]
    inc = sparse.csr_matrix((np.ones(len(cols_idx)), (rows_idx, cols_idx)))
    inter = (inc @ inc.T).toarray()
    size = np.array([len(s) for s in sets])
    jac = inter / (size[:, None] + size[None, :] - inter)
    iu = np.triu_indices(len(corpus), 1)
    s = jac[iu]
    hit = np.zeros(len(s), bool)
    for b in range(bands):
        hit |= (keys[:, b][:, None] == keys[:, b][None, :])[iu]

    checked = 0
    for lo in np.arange(0.3, 1.0, 0.1):
        sel = (s >= lo) & (s < lo + 0.1)
        if sel.sum() < 40:
            continue
        p = candidate_probability(s[sel], bands, rows)
        expected, sd = p.mean(), np.sqrt((p * (1 - p)).sum()) / sel.sum()
        assert abs(hit[sel].mean() - expected) <= 4 * sd + 0.03, (lo, hit[sel].mean(), expected)
        checked += 1
    assert checked >= 5
    # Unrelated documents (Jaccard < 0.1) essentially never collide.
    assert hit[s < 0.1].mean() < 0.002


def test_star_edges_sql_matches_numpy():
    import duckdb

    rng = np.random.default_rng(5)
    keys = rng.integers(0, 6, (300, 4)).astype(np.uint64)
    nodes = rng.permutation(300)
    src, dst = clusters.star_edges(keys, nodes)
    con = duckdb.connect()
    bands = pa.table(
        {
            "node": np.repeat(nodes, 4),
            "band": np.tile(np.arange(4), 300),
            "key": keys.ravel(),
        }
    )
    con.register("bands", bands)
    got = con.sql(clusters.STAR_EDGES_SQL + " ORDER BY src, dst").fetchnumpy()
    assert np.array_equal(got["src"], src) and np.array_equal(got["dst"], dst)
    # Star edges give the same components as all pairs within each bucket.
    labels = clusters.components(300, src, dst)
    for b in range(4):
        for k in np.unique(keys[:, b]):
            assert len(set(labels[nodes[keys[:, b] == k]])) == 1


def test_pair_jaccard_matches_sets():
    rng = np.random.default_rng(2)
    sets = [np.unique(rng.integers(0, 50, rng.integers(0, 30))) for _ in range(40)]
    offsets = np.cumsum([0] + [len(x) for x in sets])
    values = np.concatenate(sets).astype(np.uint64)
    u, v = rng.integers(0, 40, 200), rng.integers(0, 40, 200)
    got = clusters.pair_jaccard(values, offsets, u, v, chunk=64)
    for g, a, b in zip(got, u, v, strict=True):
        sa, sb = set(sets[a].tolist()), set(sets[b].tolist())
        want = len(sa & sb) / len(sa | sb) if sa | sb else 1.0
        assert g == pytest.approx(want)


def test_resolve_groups_checks_members_against_kept():
    # One component 0-1-2-3 (a chain) and a singleton 4; priority prefers low values.
    labels = np.array([0, 0, 0, 0, 1])
    priority = np.array([3, 0, 1, 2, 4])  # node 1 first, then 2, 3, 0
    assert clusters.resolve_groups(labels, priority).tolist() == [1, 1, 1, 1, 4]
    sim = {frozenset(p): 0.9 for p in [(0, 1), (1, 2), (0, 3)]}  # 3 resembles 0 only

    def score(u, v):
        return np.array([sim.get(frozenset((a, b)), 0.1) for a, b in zip(u, v, strict=True)])

    # 0 and 2 join 1; 3 fails against 1 and is resolved alone in the next round.
    assert clusters.resolve_groups(labels, priority, score, 0.8).tolist() == [1, 1, 1, 3, 4]
