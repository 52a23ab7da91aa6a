"""``TextBatch``: one Arrow string column and the pieces the scorers share.

Everything works on a whole column at once (RE2 regexes through ``pyarrow.compute``
plus numpy), never on one Python string at a time. Words come from
:mod:`winnow.scorers.words`; lines follow Python's ``str.splitlines()`` exactly.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from winnow.scorers.columns import Segments, to_numpy
from winnow.scorers.words import LINE_BREAK, count_words, tokenize


class TextBatch:
    """One Arrow string column plus the derived pieces the scorers share.

    Each piece (words, lines, ...) is computed once per batch on first use, so a
    ``score`` stage running several scorers tokenizes only once. Null texts are
    treated as empty strings.
    """

    def __init__(self, texts: pa.Array | pa.ChunkedArray):
        if isinstance(texts, pa.ChunkedArray):
            texts = texts.combine_chunks()
        self.texts = pc.fill_null(texts.cast(pa.large_string()), "")
        self.n = len(self.texts)

    @cached_property
    def lengths(self) -> np.ndarray:
        return to_numpy(pc.utf8_length(self.texts)).astype(np.int64)

    @cached_property
    def words(self) -> Segments:
        """Words as datatrove's ``split_into_words`` would give them (approximately)."""
        return tokenize(self.texts)

    @property
    def word_counts(self) -> np.ndarray:
        """Words per document (counted without building them unless already built)."""
        if "words" in self.__dict__:
            return self.words.counts
        if "_word_counts" not in self.__dict__:
            self._word_counts = count_words(self.texts)
        return self._word_counts

    @cached_property
    def lines(self) -> Segments:
        """``str.splitlines()`` of each text."""
        return splitlines(self.texts)

    @cached_property
    def newline_pieces(self) -> Segments:
        """``text.split("\\n")`` of each text."""
        return Segments.from_lists(pc.split_pattern(self.texts, "\n"))

    def count(self, needle: str) -> np.ndarray:
        """Non-overlapping occurrences of a literal substring, per document."""
        return to_numpy(pc.count_substring(self.texts, needle)).astype(np.int64)


def splitlines(texts: pa.Array) -> Segments:
    """Python ``str.splitlines()`` over a column: no empty piece after a final break."""
    pieces = Segments.from_lists(pc.split_pattern_regex(texts, LINE_BREAK))
    # A trailing break (or an empty text) leaves one empty last piece: drop it.
    ends_with_break = to_numpy(pc.match_substring_regex(texts, f"(?:{LINE_BREAK})$"))
    drop = ends_with_break | (to_numpy(pc.utf8_length(texts)) == 0)
    keep = np.ones(len(pieces.values), dtype=bool)
    keep[pieces.offsets[1:][drop] - 1] = False
    return pieces.select(keep)
