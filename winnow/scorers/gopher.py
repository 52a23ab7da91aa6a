"""Gopher quality and repetition rules (Rae et al. 2021, "Scaling Language Models",
appendix A), with datatrove's defaults.

Both work on whole columns: words come from :func:`winnow.scorers.words.tokenize`,
lines and paragraphs from Arrow's regex split, repeated pieces from grouping exact
(document, piece) keys. Only the greedy duplicated-n-gram scan loops in Python, over
the chain of counted n-grams, plus an exact rescan of the rare documents where the
vectorised shortcut does not apply.
"""

from __future__ import annotations

from bisect import bisect_right

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from winnow.scorers.base import Scorer, ScorerParams, decide
from winnow.scorers.columns import Groups, Segments, duplicates, group, ratio
from winnow.scorers.text import TextBatch
from winnow.scorers.words import PUNCTUATION, WS

STOP_WORDS = ["the", "be", "to", "of", "and", "that", "have", "with"]


class GopherQuality(Scorer):
    """Gopher's document-quality rules.

    "Words" are tokens containing at least one non-symbol character; the hash and
    ellipsis ratios and the alpha ratio divide by all tokens (as datatrove does).
    A threshold set to ``null`` disables its rule.
    """

    name = "gopher_quality"

    class Params(ScorerParams):
        min_doc_words: int | None = 50
        """Fail documents with fewer words (Gopher: 50)."""
        max_doc_words: int | None = 100_000
        """Fail documents with more words (Gopher: 100,000)."""
        min_avg_word_length: float | None = 3
        """Fail documents whose mean word length is below this (Gopher: 3 characters)."""
        max_avg_word_length: float | None = 10
        """Fail documents whose mean word length is above this (Gopher: 10 characters)."""
        max_symbol_word_ratio: float | None = 0.1
        """Fail documents with more ``#``, or more ellipses, per token than this
        (Gopher: 0.1)."""
        max_bullet_lines_ratio: float | None = 0.9
        """Fail documents where more than this share of lines start with a bullet."""
        max_ellipsis_lines_ratio: float | None = 0.3
        """Fail documents where more than this share of lines end in an ellipsis."""
        min_alpha_words_ratio: float | None = 0.8
        """Fail documents where fewer than this share of tokens contain a letter
        (datatrove calls it ``max_non_alpha_words_ratio``; it is a minimum)."""
        min_stop_words: int | None = 2
        """Fail documents with fewer distinct ``stop_words`` than this (Gopher: 2)."""
        stop_words: list[str] = Field(default_factory=lambda: list(STOP_WORDS))
        """The stop words counted by ``min_stop_words`` (case-sensitive)."""

    def score(self, batch: TextBatch) -> dict[str, pa.Array]:
        p = self.params
        words = batch.words
        n_tokens = words.counts
        is_word = words.per_distinct(lambda w: pc.match_substring_regex(w, f"[^{PUNCTUATION}]"))
        n_words = words.count(is_word)
        word_chars = words.sum(np.where(is_word, words.lengths, 0))
        mean_len = np.divide(word_chars, n_words, out=np.full(batch.n, np.nan), where=n_words > 0)
        hashes = ratio(batch.count("#"), n_tokens)
        ellipsis = ratio(batch.count("...") + batch.count("…"), n_tokens)
        lines = batch.lines
        bullets = lines.count(pc.match_substring_regex(lines.values, f"^[{WS}]*[•-]"))
        end_ellipsis = lines.count(
            pc.match_substring_regex(lines.values, f"(?:\\.\\.\\.|…)[{WS}]*$")
        )
        bullet_ratio = ratio(bullets, lines.counts)
        end_ellipsis_ratio = ratio(end_ellipsis, lines.counts)
        alpha = words.per_distinct(lambda w: pc.match_substring_regex(w, r"\pL"))
        alpha_ratio = ratio(words.count(alpha), n_tokens)
        stop_words = self._distinct_stop_words(words)

        def below(x, t):
            return None if t is None else x < t

        def above(x, t):
            return None if t is None else x > t

        passed, reason = decide(
            batch.n,
            [
                ("short_doc", below(n_words, p.min_doc_words)),
                ("long_doc", above(n_words, p.max_doc_words)),
                ("short_mean_word", below(mean_len, p.min_avg_word_length)),
                ("long_mean_word", above(mean_len, p.max_avg_word_length)),
                ("too_many_hashes", above(hashes, p.max_symbol_word_ratio)),
                ("too_many_ellipsis", above(ellipsis, p.max_symbol_word_ratio)),
                ("too_many_bullet_lines", above(bullet_ratio, p.max_bullet_lines_ratio)),
                ("too_many_ellipsis_lines", above(end_ellipsis_ratio, p.max_ellipsis_lines_ratio)),
                ("few_alpha_words", below(alpha_ratio, p.min_alpha_words_ratio)),
                ("few_stop_words", below(stop_words, p.min_stop_words)),
            ],
        )
        return {
            "gopher_n_words": pa.array(n_words, pa.int64()),
            "gopher_mean_word_len": pa.array(mean_len, pa.float64(), from_pandas=True),
            "gopher_hash_ratio": pa.array(hashes),
            "gopher_ellipsis_ratio": pa.array(ellipsis),
            "gopher_bullet_lines_ratio": pa.array(bullet_ratio),
            "gopher_ellipsis_lines_ratio": pa.array(end_ellipsis_ratio),
            "gopher_alpha_words_ratio": pa.array(alpha_ratio),
            "gopher_stop_words": pa.array(stop_words, pa.int64()),
            "gopher_quality_pass": passed,
            "gopher_quality_reason": reason,
        }

    def _distinct_stop_words(self, words: Segments) -> np.ndarray:
        """How many distinct stop words (case-sensitive) each document contains."""
        stop = pa.array(sorted(set(self.params.stop_words)), pa.large_string())
        which = words.per_distinct(lambda w: pc.fill_null(pc.index_in(w, value_set=stop), -1))
        hit = which >= 0
        present = np.unique(words.parent[hit] * len(stop) + which[hit])
        return np.bincount(present // max(len(stop), 1), minlength=len(words.counts))


class GopherRepetition(Scorer):
    """Gopher's repetition rules: duplicated lines/paragraphs and repeated n-grams.

    ``top_n_grams``: ``[n, max_fraction]`` pairs for "characters in the most frequent
    n-gram"; ``dup_n_grams``: pairs for "characters in duplicated n-grams". Fractions
    are of the document's characters. Empty documents fail with reason ``empty``.
    """

    name = "gopher_repetition"

    class Params(ScorerParams):
        dup_line_frac: float | None = 0.3
        """Fail documents where more than this share of lines repeat an earlier line."""
        dup_para_frac: float | None = 0.3
        """Fail documents where more than this share of paragraphs repeat an earlier one."""
        dup_line_char_frac: float | None = 0.2
        """Fail documents where more than this share of characters are in repeated lines."""
        dup_para_char_frac: float | None = 0.2
        """Fail documents where more than this share of characters are in repeated
        paragraphs."""
        top_n_grams: list[tuple[int, float]] = [(2, 0.2), (3, 0.18), (4, 0.16)]
        """``[n, max_fraction]`` pairs: fail when the most frequent word n-gram covers
        more than this share of the characters (Gopher's values)."""
        dup_n_grams: list[tuple[int, float]] = [
            (5, 0.15),
            (6, 0.14),
            (7, 0.13),
            (8, 0.12),
            (9, 0.11),
            (10, 0.10),
        ]
        """``[n, max_fraction]`` pairs: fail when duplicated word n-grams cover more than
        this share of the characters (Gopher's values)."""

    def score(self, batch: TextBatch) -> dict[str, pa.Array]:
        p = self.params
        chars = batch.lengths
        paras = Segments.from_lists(
            pc.split_pattern_regex(pc.utf8_trim_whitespace(batch.texts), r"\n{2,}")
        )
        para_dups, para_dup_chars = duplicates(paras)
        lines = Segments.from_lists(pc.split_pattern_regex(batch.texts, r"\n+"))
        line_dups, line_dup_chars = duplicates(lines)
        cols = {
            "gopher_dup_para_frac": ratio(para_dups, paras.counts),
            "gopher_dup_para_char_frac": ratio(para_dup_chars, chars),
            "gopher_dup_line_frac": ratio(line_dups, lines.counts),
            "gopher_dup_line_char_frac": ratio(line_dup_chars, chars),
        }
        grams = NGrams(batch.words)
        for n, _ in p.top_n_grams:
            cols[f"gopher_top_{n}gram_frac"] = ratio(grams.top_chars(n), chars)
        for n, _ in p.dup_n_grams:
            cols[f"gopher_dup_{n}gram_frac"] = ratio(grams.duplicated_chars(n), chars)

        def above(name, t):
            return None if t is None else cols[name] > t

        rules = [
            ("empty", chars == 0),
            ("dup_para_frac", above("gopher_dup_para_frac", p.dup_para_frac)),
            ("dup_para_char_frac", above("gopher_dup_para_char_frac", p.dup_para_char_frac)),
            ("dup_line_frac", above("gopher_dup_line_frac", p.dup_line_frac)),
            ("dup_line_char_frac", above("gopher_dup_line_char_frac", p.dup_line_char_frac)),
        ]
        rules += [(f"top_{n}_gram", above(f"gopher_top_{n}gram_frac", t)) for n, t in p.top_n_grams]
        rules += [
            (f"duplicated_{n}_n_grams", above(f"gopher_dup_{n}gram_frac", t))
            for n, t in p.dup_n_grams
        ]
        passed, reason = decide(batch.n, rules)
        out = {name: pa.array(values) for name, values in cols.items()}
        out["gopher_repetition_pass"] = passed
        out["gopher_repetition_reason"] = reason
        return out


class NGrams:
    """Repeated word n-grams of every document.

    An n-gram can only repeat where the (n-1)-grams at ``i`` and ``i + 1`` both
    repeat, so each level keys only those positions: ``key_n(i) = (group of the
    (n-1)-gram at i, word i+n-1)``, starting from ``(doc, word)``. Keys are exact (no
    hashing) and never mix documents; groups are numbered doc-major.
    """

    def __init__(self, words: Segments):
        self.words = words
        self.word_ids = words.codes[0]
        self.vocab = int(self.word_ids.max(initial=0)) + 1
        self.size = len(self.word_ids)
        self.pos = np.arange(self.size) - words.offsets[:-1][words.parent]
        self.doc_len = words.counts[words.parent]
        self.cum_chars = np.concatenate([[0], np.cumsum(words.lengths)])
        everywhere = np.arange(self.size)
        self._levels = {1: (everywhere, group(words.parent * self.vocab + self.word_ids))}

    def level(self, n: int) -> tuple[np.ndarray, Groups]:
        """Positions that may hold a repeated n-gram (ascending) and their groups."""
        if n not in self._levels:
            at, groups = self.level(n - 1)
            repeated = groups.counts[groups.ids] >= 2
            rep_at = at[repeated]
            is_rep = np.zeros(self.size + 1, dtype=bool)
            is_rep[rep_at] = True
            cand = rep_at[is_rep[rep_at + 1] & (self.pos[rep_at] + n <= self.doc_len[rep_at])]
            prev_group = np.full(self.size, -1, dtype=np.int64)
            prev_group[at] = groups.ids
            keys = prev_group[cand] * self.vocab + self.word_ids[cand + n - 1]
            self._levels[n] = (cand, group(keys))
        return self._levels[n]

    def gram_chars(self, at: np.ndarray, n: int) -> np.ndarray:
        """Characters of the n-grams starting at ``at`` (words concatenated)."""
        return self.cum_chars[at + n] - self.cum_chars[at]

    def top_chars(self, n: int) -> np.ndarray:
        """Per doc: ``len(" ".join(top n-gram)) * its count``; ties go to the first seen."""
        starts = self.words.offsets[:-1]
        fits = self.words.counts >= n
        out = np.zeros(len(starts), dtype=np.int64)
        # With no repeated n-gram the top one is the first, seen once.
        out[fits] = self.gram_chars(starts[fits], n) + n - 1
        at, groups = self.level(n)
        rep = np.flatnonzero(groups.counts >= 2)
        if len(rep) == 0:
            return out
        first_at = at[groups.first_pos[rep]]
        doc = self.words.parent[first_at]
        big = self.size + 1
        best = groups.counts[rep] * big + (big - 1 - first_at)  # more copies, then earlier
        seg = np.flatnonzero(np.r_[True, doc[1:] != doc[:-1]])
        top = np.maximum.reduceat(best, seg)
        count, first = top // big, big - 1 - top % big
        out[doc[seg]] = (self.gram_chars(first, n) + n - 1) * count
        return out

    def duplicated_chars(self, n: int) -> np.ndarray:
        """Per doc: characters of duplicated n-grams, datatrove's greedy left-to-right scan.

        The scan visits positions in order; a visited n-gram seen before at a visited
        position counts and the next ``n - 1`` positions are skipped. Only repeated
        n-grams can count. Fast path for all documents at once: assume every visited
        repeat counts, follow the chain of jumps (one chain threads through every
        document), then check that the first or the previous copy of each counted
        n-gram was visited. Documents where neither was are rescanned exactly.
        """
        parent = self.words.parent
        out = np.zeros(len(self.words.counts), dtype=np.int64)
        at, groups = self.level(n)
        repeat = ~groups.first
        if not repeat.any():
            return out
        ids = groups.ids
        order = np.argsort(ids, kind="stable")  # copies of each n-gram, in position order
        copies = at[order]
        starts = np.concatenate([[0], np.cumsum(groups.counts)])
        rank = np.empty(len(at), dtype=np.int64)
        rank[order] = np.arange(len(at))

        cand, key = at[repeat], ids[repeat]
        doc = parent[cand]
        chars = self.gram_chars(cand, n)
        doc_end = np.searchsorted(doc, doc, side="right")
        jump = np.minimum(np.searchsorted(cand, cand + n), doc_end)
        chain = np.array(_follow(jump.tolist()), dtype=np.int64)
        hits = cand[chain]

        # visited copies before each counted repeat, under the chain's own skips
        j = np.searchsorted(hits, copies, side="right") - 1
        h = hits[np.maximum(j, 0)]
        seen = np.concatenate([[0], np.cumsum((j < 0) | (copies == h) | (copies >= h + n))])
        t = rank[np.flatnonzero(repeat)[chain]]
        ok = seen[t] - seen[starts[key[chain]]] > 0
        # per document, the chain is right up to its first failure
        chain_doc = doc[chain]
        fail = np.flatnonzero(~ok)
        fail = fail[np.diff(chain_doc[fail], prepend=-1) != 0]
        counted = ~np.isin(chain_doc, chain_doc[fail])
        np.add.at(out, chain_doc[counted], chars[chain][counted])
        for k in fail.tolist():
            d = chain_doc[k]
            lo, hi = np.searchsorted(doc, [d, d + 1])
            done = chain[np.searchsorted(chain_doc, d) : k]  # hits before the failure
            out[d] = chars[done].sum() + _exact_scan(
                cand[lo:hi], key[lo:hi], chars[lo:hi], jump[lo:hi] - lo, n, copies, starts,
                hits=cand[done].tolist(), start=int(chain[k] - lo) + 1,
            )  # fmt: skip
        return out


def _follow(jump: list[int]) -> list[int]:
    """Indices visited by following ``jump`` from 0 until past the end."""
    out, i, m = [], 0, len(jump)
    while i < m:
        out.append(i)
        i = jump[i]
    return out


def _exact_scan(cand, key, chars, jump, n, copies, starts, hits: list[int], start: int) -> int:
    """One document, the general case: a repeat counts only if an earlier copy was visited.

    Resumes at candidate ``start`` given the ``hits`` so far; returns the characters of
    the hits it adds.
    """
    pos, keys, lens, nxt = cand.tolist(), key.tolist(), chars.tolist(), jump.tolist()
    total = 0

    def visited(q: int) -> bool:
        k = bisect_right(hits, q) - 1
        return k < 0 or q == hits[k] or q >= hits[k] + n

    i = start
    while i < len(pos):
        c, k = pos[i], keys[i]
        earlier = copies[starts[k] : starts[k + 1]]
        if any(visited(int(q)) for q in earlier[: np.searchsorted(earlier, c)]):
            hits.append(c)
            total += lens[i]
            i = nxt[i]
        else:
            i += 1
    return total
