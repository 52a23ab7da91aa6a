"""C4's rules (Raffel et al. 2020) as datatrove implements them, in two parts.

Line rules decide which lines survive: a line is dropped if it has a word longer
than ``max_word_length``, does not end in terminal punctuation (or ends in an
ellipsis), has fewer than ``min_words_per_line`` words, mentions "javascript", or
contains a cookie/terms-of-use phrase; wiki citations (``[1]``, ``[edit]``) are
removed first. Document rules then fail a document on "lorem ipsum" or a curly
bracket in a line that reached that check, or fewer than ``min_num_sentences``
sentences in its surviving lines.

The ``c4_quality`` scorer measures and decides without changing text; the
``c4_clean`` stage (winnow.stages.score) rewrites the text to its surviving lines.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from winnow.scorers.base import Scorer, ScorerParams, decide
from winnow.scorers.columns import Segments, to_numpy
from winnow.scorers.text import TextBatch
from winnow.scorers.words import WS, tokenize

CITATION = r"\[\p{Nd}*\]|\[edit\]|\[citation needed\]"
POLICY = r"(?i)terms of use|privacy policy|cookie policy|uses cookies|use of cookies|use cookies"
# spaCy's sentencizer splits after these characters (its default punct_chars).
SENTENCE_END = (
    "!.?\u0589\u061f\u06d4\u0700-\u0702\u07f9\u0964-\u0965\u104a-\u104b\u1362\u1367-\u1368\u166e"
    "\u1735-\u1736\u1803\u1809\u1944-\u1945\u1aa8-\u1aab\u1b5a-\u1b5b\u1b5e-\u1b5f\u1c3b-\u1c3c"
    "\u1c7e-\u1c7f\u203c-\u203d\u2047-\u2049\u2e2e\u2e3c\u3002\ua4ff\ua60e-\ua60f\ua6f3\ua6f7"
    "\ua876-\ua877\ua8ce-\ua8cf\ua92f\ua9c8-\ua9c9\uaa5d-\uaa5f\uaaf0-\uaaf1\uabeb\ufe52"
    "\ufe56-\ufe57\uff01\uff0e\uff1f\uff61\U00010a56-\U00010a57\U00011047-\U00011048"
    "\U000110be-\U000110c1\U00011141-\U00011143\U000111c5-\U000111c6\U000111cd"
    "\U000111de-\U000111df\U00011238-\U00011239\U0001123b-\U0001123c\U000112a9"
    "\U0001144b-\U0001144c\U000115c2-\U000115c3\U000115c9-\U000115d7\U00011641-\U00011642"
    "\U0001173c-\U0001173e\U00011a42-\U00011a43\U00011a9b-\U00011a9c\U00011c41-\U00011c42"
    "\U00016a6e-\U00016a6f\U00016af5\U00016b37-\U00016b38\U00016b44\U0001bc9f\U0001da88"
)


class C4LineParams(ScorerParams):
    """The line-level rules; ``null`` disables a numeric rule."""

    remove_citations: bool = True
    """Remove wiki citation marks (``[1]``, ``[edit]``, ``[citation needed]``) first."""
    filter_no_terminal_punct: bool = True
    """Drop lines that do not end in terminal punctuation, or end in an ellipsis."""
    min_words_per_line: int | None = 3
    """Drop lines with fewer words than this (C4: 3)."""
    max_word_length: int | None = 1000
    """Drop lines with a word longer than this many characters (C4: 1000)."""
    filter_javascript: bool = True
    """Drop lines that mention "javascript"."""
    filter_policy: bool = True
    """Drop lines with a cookie, privacy-policy or terms-of-use phrase."""


@dataclass
class C4Lines:
    """Per-line outcome of the line rules for a batch.

    ``lines`` are the stripped, citation-free lines; ``kept`` marks survivors;
    ``lorem`` and ``curly`` mark lines that would abort their document.
    """

    lines: Segments
    kept: np.ndarray
    lorem: np.ndarray
    curly: np.ndarray

    def kept_text(self) -> pa.Array:
        """Each document's surviving lines joined by newlines and stripped."""
        return pc.utf8_trim_whitespace(self.lines.select(self.kept).join("\n"))


def c4_lines(
    batch: TextBatch,
    p: C4LineParams,
    filter_lorem_ipsum: bool = False,
    filter_curly_bracket: bool = False,
) -> C4Lines:
    """Apply the line rules in datatrove's order, vectorised over all lines.

    Each rule is evaluated only on the lines still alive, so later rules are cheap.
    """
    raw = batch.lines
    stripped = pc.utf8_trim_whitespace(raw.values)
    n = len(stripped)
    text = pc.replace_substring_regex(stripped, CITATION, "") if p.remove_citations else stripped
    alive = np.arange(n)

    def test(values: pa.Array, pattern: str) -> np.ndarray:
        return _match(values.take(pa.array(alive)), pattern)

    if p.max_word_length is not None:
        alive = alive[~_has_long_word(stripped.take(pa.array(alive)), p.max_word_length)]
    if p.filter_no_terminal_punct:
        alive = alive[test(text, "[.?!\"']$") & ~test(text, r"\.\.\.$")]
    if p.min_words_per_line is not None and p.min_words_per_line > 0:
        # at least k whitespace-separated words (lines are stripped)
        k = p.min_words_per_line - 1
        alive = alive[test(stripped, f"^(?:[^{WS}]+[{WS}]+){{{k}}}[^{WS}]")]
    lorem = np.zeros(n, dtype=bool)
    if filter_lorem_ipsum:
        hit = test(text, "(?i)lorem ipsum")
        lorem[alive[hit]] = True
        alive = alive[~hit]
    if p.filter_javascript:
        alive = alive[~test(text, "(?i)javascript")]
    curly = np.zeros(n, dtype=bool)
    if filter_curly_bracket:
        hit = test(text, r"\{")
        curly[alive[hit]] = True
        alive = alive[~hit]
    if p.filter_policy:
        alive = alive[~test(text, POLICY)]
    kept = np.zeros(n, dtype=bool)
    kept[alive] = True
    return C4Lines(Segments(text, raw.offsets), kept, lorem, curly)


def _match(values: pa.Array, pattern: str) -> np.ndarray:
    return to_numpy(pc.match_substring_regex(values, pattern)).astype(bool)


def _has_long_word(lines: pa.Array, limit: int) -> np.ndarray:
    """Lines with a whitespace-separated word longer than ``limit`` characters.

    Only lines longer than ``limit`` can have one, so the few candidates are split
    in Python (RE2 caps counted repetition at 1000).
    """
    out = np.zeros(len(lines), dtype=bool)
    for i in np.flatnonzero(to_numpy(pc.utf8_length(lines)) > limit):
        out[i] = any(len(w) > limit for w in lines[int(i)].as_py().split())
    return out


# Joins a document's lines for one tokenizer pass; a private-use character.
_LINE_MARK = "\ue000"


def sentence_counts(lines: Segments) -> np.ndarray:
    """Sentences per document, summed over its lines as spaCy's sentencizer counts them.

    A non-empty line has one sentence, plus one for every non-punctuation word that
    follows a sentence-ending token (``.``, ``!``, ``?`` ...). Only lines with a
    sentence-ending character followed by a non-punctuation character can have more
    than one; those are tokenized together, joined by a marker word that resets the
    count between lines.
    """
    nonempty = lines.count(lines.lengths > 0)
    maybe = _match(lines.values, f"[{SENTENCE_END}].*[^\\pP{WS}]")
    if not maybe.any():
        return nonempty
    words = tokenize(lines.select(maybe).join(f" {_LINE_MARK} "))
    ender = words.per_distinct(lambda w: pc.match_substring_regex(w, f"^[{SENTENCE_END}]$"))
    punct = words.per_distinct(lambda w: pc.match_substring_regex(w, r"^\pP+$"))
    word = ~punct & ~ender
    mark = words.per_distinct(lambda w: pc.equal(w, _LINE_MARK))
    seen = np.concatenate([[0], np.cumsum(ender)])
    idx = np.flatnonzero(word)
    doc = words.parent[idx]
    # enders between the previous word (or marker) of the same document and this word
    first = np.r_[True, doc[1:] != doc[:-1]]
    prev = np.where(first, words.offsets[:-1][doc], np.r_[0, idx[:-1] + 1])
    starts = (seen[idx] > seen[prev]) & ~mark[idx]
    return nonempty + np.bincount(doc[starts], minlength=len(lines.counts))


class C4Quality(Scorer):
    """C4's document rules, measured on the lines that survive the line rules."""

    name = "c4_quality"

    class Params(C4LineParams):
        min_num_sentences: int | None = 5
        """Fail documents with fewer sentences in their surviving lines (C4: 5)."""
        filter_lorem_ipsum: bool = True
        """Fail documents with "lorem ipsum" in a line that reached that check."""
        filter_curly_bracket: bool = True
        """Fail documents with a curly bracket in a line that reached that check."""

    def score(self, batch: TextBatch) -> dict[str, pa.Array]:
        p = self.params
        result = c4_lines(batch, p, p.filter_lorem_ipsum, p.filter_curly_bracket)
        lines = result.lines
        kept = lines.select(result.kept)
        sentences = sentence_counts(kept)
        # The first aborting line decides between lorem ipsum and curly bracket.
        abort = result.lorem | result.curly
        index = np.where(abort, np.arange(len(abort)), len(abort))
        first = _segment_min(index, lines.offsets, len(abort))
        has_abort = first < len(abort)
        first_is_lorem = np.zeros(batch.n, dtype=bool)
        first_is_lorem[has_abort] = result.lorem[first[has_abort]]
        few = None if p.min_num_sentences is None else sentences < p.min_num_sentences
        passed, reason = decide(
            batch.n,
            [
                ("lorem_ipsum", has_abort & first_is_lorem),
                ("curly_bracket", has_abort & ~first_is_lorem),
                ("too_few_sentences", few),
            ],
        )
        return {
            "c4_lines": pa.array(lines.counts, pa.int64()),
            "c4_kept_lines": pa.array(kept.counts, pa.int64()),
            "c4_sentences": pa.array(sentences, pa.int64()),
            "c4_quality_pass": passed,
            "c4_quality_reason": reason,
        }


def _segment_min(values: np.ndarray, offsets: np.ndarray, empty: int) -> np.ndarray:
    """Per-segment minimum; ``empty`` for segments with no elements."""
    out = np.full(len(offsets) - 1, empty, dtype=np.int64)
    nonempty = np.flatnonzero(np.diff(offsets) > 0)
    if len(nonempty):
        out[nonempty] = np.minimum.reduceat(values, offsets[:-1][nonempty])
    return out
