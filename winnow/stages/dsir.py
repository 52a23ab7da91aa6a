"""``dsir``: Data Selection with Importance Resampling (Xie et al. 2023), as a scoring stage.

Each document becomes hashed unigram + bigram counts (lowercased, split by the
``\\w+|[^\\w\\s]+`` word/punctuation rule); bag-of-ngram distributions are fitted on
the reference set (target) and on the stage's whole input (raw). Columns added:

- ``dsir_score``: the package's log importance weight
  ``sum_b count_b * (log p_target(b) - log p_raw(b))``, each probability plus 1e-8,
- ``dsir_llr``: the recommended score (``select`` by it for top-k): the same log ratio
  with ``smoothing`` pseudo-counts per bucket, per n-gram by default (``normalize``),
- ``dsir_gumbel``: ``dsir_llr`` (times the input's mean n-gram count when per n-gram)
  plus Gumbel noise drawn from a hash of the row's id and the seed, so ``select`` by it
  is DSIR's Gumbel top-k sampling without replacement, deterministic and independent
  of sharding.

Why ``dsir_llr``: with a reference of a few hundred documents most buckets have few or
no target counts, and the package's 1e-8 floor charges about ``log 1e-8`` per unseen
n-gram, so one rare n-gram outweighs the rest of a document; and the weight is a sum,
so long documents crowd both ends (the paper scored 128-word chunks). Add-one
pseudo-counts and the per-n-gram mean (Moore and Lewis's cross-entropy difference,
negated) fix both: AUC 0.694 -> 0.931 on the skills benchmark, with gains on three
other target areas too (``benchmarks/RESULTS.md``, "Skill-graph selection").

``mode: exact`` reproduces the ``data-selection`` package (sha256 buckets; its counts
and ``dsir_score`` bit for bit; tested against it). ``mode: fast`` hashes each
distinct word once with xxh3 and derives n-gram buckets from the word hashes with
integer mixing: the same estimator with a different (equally uniform) hash, several
times faster. The package's resampling also drops documents under 100 words; add a
``filter`` for that if wanted.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import xxhash
from pydantic import Field

from winnow.hashing import hash_strings
from winnow.skills.reference import read_reference
from winnow.stages.base import GlobalStage, Materialized, Output, Params
from winnow.table import ID, TEXT, set_column

WORDS = re.compile(r"\w+|[^\w\s]+")
"""nltk's WordPunctTokenizer, which the data-selection package uses."""
_MIX = np.uint64(0x9E3779B97F4A7C15)


class DsirParams(Params):
    reference: str | list[str]
    """The target set (paths or globs, read like the pipeline input)."""
    text_field: str = "text"
    """Text field of the reference files."""
    mode: Literal["exact", "fast"] = "fast"
    """``exact``: the data-selection package's sha256 hashing; ``fast``: xxh3."""
    num_buckets: int = Field(default=10_000, gt=0)
    """Hash buckets of the n-gram features (the package's default)."""
    ngrams: int = Field(default=2, ge=1)
    """Longest n-gram: 2 means unigrams and bigrams."""
    text_column: str = TEXT
    """Column of the corpus holding the text."""
    smoothing: float = Field(default=1.0, ge=0)
    """Pseudo-count added to every bucket of both distributions for ``dsir_llr``
    (add-one, Laplace: the textbook default for sparse counts; 0.5 measured alike,
    0.1 worse). 0: the package's estimate (probabilities plus 1e-8)."""
    normalize: Literal["mean", "none"] = "mean"
    """``dsir_llr`` per n-gram (``mean``: the log-likelihood ratio divided by the
    document's n-gram count, so scores compare across lengths; the default, as
    documents of a corpus are not fixed-length chunks) or summed (``none``)."""


class HashedNgrams:
    """Maps a text to the bucket of each of its 1..n-grams."""

    def __init__(self, mode: str, num_buckets: int, ngrams: int):
        self.mode, self.num_buckets, self.ngrams = mode, num_buckets, ngrams
        self._cache: dict[str, int] = {}

    def _sha_bucket(self, gram: str) -> int:
        bucket = self._cache.get(gram)
        if bucket is None:
            digest = hashlib.sha256(gram.encode("utf-8")).hexdigest()
            bucket = self._cache[gram] = int(digest, 16) % self.num_buckets
        return bucket

    def _word_hash(self, word: str) -> int:
        value = self._cache.get(word)
        if value is None:
            value = self._cache[word] = xxhash.xxh3_64_intdigest(word.encode("utf-8"))
        return value

    def buckets(self, text: str) -> np.ndarray:
        """Bucket ids (int64): unigrams first, then bigrams, ... in text order."""
        words = WORDS.findall(text.lower())
        if self.mode == "exact":
            grams = [
                self._sha_bucket(" ".join(words[i : i + n]))
                for n in range(1, self.ngrams + 1)
                for i in range(len(words) - n + 1)
            ]
            return np.asarray(grams, dtype=np.int64)
        h = np.fromiter(map(self._word_hash, words), dtype=np.uint64, count=len(words))
        parts, gram = [h], h
        for n in range(2, self.ngrams + 1):
            gram = _mix(gram[:-1] * _MIX + h[n - 1 :])
            parts.append(gram)
        return (np.concatenate(parts) % np.uint64(self.num_buckets)).astype(np.int64)

    def counts(self, texts) -> np.ndarray:
        """Summed bucket counts of ``texts`` (int64, length ``num_buckets``)."""
        total = np.zeros(self.num_buckets, dtype=np.int64)
        for text in texts:
            total += np.bincount(self.buckets(text or ""), minlength=self.num_buckets)
        return total


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, elementwise on uint64 (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def log_ratio(target: np.ndarray, raw: np.ndarray, smoothing: float = 0.0) -> np.ndarray:
    """``log p_target - log p_raw`` per bucket from bucket counts: with ``smoothing``
    pseudo-counts, ``p = (count + smoothing) / (total + smoothing * buckets)``; with
    none, ``log(p + 1e-8)`` of the plain frequencies, as the package."""
    if smoothing:
        t, r = target + smoothing, raw + smoothing
        return np.log(t / t.sum()) - np.log(r / r.sum())
    t = target / target.sum() if target.sum() else target.astype(np.float64)
    r = raw / raw.sum() if raw.sum() else raw.astype(np.float64)
    return np.log(t + 1e-8) - np.log(r + 1e-8)


def importance(
    features: HashedNgrams, log_diffs: np.ndarray, texts
) -> tuple[np.ndarray, np.ndarray]:
    """Summed log ratios (float64, one row per row of ``log_diffs``, shape
    ``(k, buckets)``) and n-gram count (int64) of each text. In exact mode the first
    row is summed as the package does (a dot product with the bucket counts)."""
    out = np.empty((len(log_diffs), len(texts)), dtype=np.float64)
    grams = np.empty(len(texts), dtype=np.int64)
    for i, text in enumerate(texts):
        buckets = features.buckets(text or "")
        grams[i] = len(buckets)
        for k, log_diff in enumerate(log_diffs):
            if k == 0 and features.mode == "exact":  # bit for bit
                out[k, i] = np.dot(log_diff, np.bincount(buckets, minlength=features.num_buckets))
            else:
                out[k, i] = log_diff[buckets].sum()
    return out, grams


def gumbel(ids: pa.ChunkedArray | pa.Array, seed: int) -> np.ndarray:
    """Standard Gumbel noise, one draw per id from a seeded hash (uniform in (0, 1))."""
    u = ((hash_strings(ids, seed) >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)
    return -np.log(-np.log(u))


class Dsir(GlobalStage):
    """DSIR log importance weights, smoothed per-n-gram log ratios and Gumbel keys;
    fits the raw distribution on the input."""

    name = "dsir"
    Params = DsirParams

    def run(self, data: Materialized, workdir: Path) -> Iterator[Output]:
        p = self.params
        features = HashedNgrams(p.mode, p.num_buckets, p.ngrams)
        target = features.counts(read_reference(p.reference, p.text_field))
        raw, docs = np.zeros(p.num_buckets, dtype=np.int64), 0
        for table in data.tables([p.text_column]):
            raw += features.counts(table.column(p.text_column).to_pylist())
            docs += table.num_rows
        log_diffs = np.stack([log_ratio(target, raw), log_ratio(target, raw, p.smoothing)])
        # per n-gram: the Gumbel key is the log weight a document of mean length would
        # get, so the noise keeps DSIR's sampling temperature
        scale = raw.sum() / max(docs, 1) if p.normalize == "mean" else 1.0
        stats = {"dsir_target_ngrams": float(target.sum()), "dsir_raw_ngrams": float(raw.sum())}
        for table in data.tables():
            (score, llr), grams = importance(
                features, log_diffs, table.column(p.text_column).to_pylist()
            )
            if p.normalize == "mean":
                llr = llr / np.maximum(grams, 1)
            noisy = llr * scale + gumbel(table.column(ID), self.seed)
            table = set_column(table, "dsir_score", pa.array(score, pa.float64()))
            table = set_column(table, "dsir_llr", pa.array(llr, pa.float64()))
            table = set_column(table, "dsir_gumbel", pa.array(noisy, pa.float64()))
            yield Output(kept=table, stats=stats)
            stats = {}
