"""FineWeb's quality rules (Penedo et al. 2024), with datatrove's defaults.

``char_duplicates_ratio`` defaults to 0.01, the value in datatrove's code that built
FineWeb; the FineWeb write-up quotes 0.1. Lines are ``text.split("\\n")`` without
blank ones; words come from :func:`winnow.scorers.text.tokenize`.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from winnow.scorers.base import Scorer, ScorerParams, decide
from winnow.scorers.columns import duplicates, ratio, to_numpy
from winnow.scorers.text import TextBatch
from winnow.scorers.words import TERMINAL, WS


class FineWebQuality(Scorer):
    """Line punctuation, short lines, duplicated line characters and list-likeness."""

    name = "fineweb_quality"

    class Params(ScorerParams):
        line_punct_thr: float | None = 0.12
        """Fail documents where fewer than this share of lines end in punctuation."""
        line_punct_exclude_zero: bool = False
        """Do not fail documents where *no* line ends in punctuation."""
        stop_chars: str | None = None
        """Characters that end a "punctuated" line; default: sentence terminals."""
        short_line_thr: float | None = 0.67
        """Fail documents where more than this share of lines are short."""
        short_line_length: int = 30
        """A line of at most this many characters is short."""
        char_duplicates_ratio: float | None = 0.01
        """Fail documents where more than this share of characters are in lines that
        repeat an earlier line (datatrove's code: 0.01; the FineWeb write-up: 0.1)."""
        new_line_ratio: float | None = 0.3
        """Fail list-like documents: more than this many newlines per word."""

    def score(self, batch: TextBatch) -> dict[str, pa.Array]:
        p = self.params
        pieces = batch.newline_pieces
        lines = pieces.select(to_numpy(pc.match_substring_regex(pieces.values, f"[^{WS}]")))
        n_lines = lines.counts
        ends = TERMINAL if p.stop_chars is None else _literal_class(p.stop_chars)
        punct = ratio(lines.count(pc.match_substring_regex(lines.values, f"[{ends}]$")), n_lines)
        short = ratio(lines.count(lines.lengths <= p.short_line_length), n_lines)
        _, dup_chars = duplicates(lines)
        dup = ratio(dup_chars, batch.lengths - batch.count("\n"))
        newlines = ratio(batch.count("\n"), batch.word_counts)
        empty = n_lines == 0
        punct_fail = None
        if p.line_punct_thr is not None:
            punct_fail = punct < p.line_punct_thr
            if p.line_punct_exclude_zero:
                punct_fail &= punct != 0
        passed, reason = decide(
            batch.n,
            [
                ("empty", empty),
                ("line_punct_ratio", punct_fail),
                (
                    "short_line_ratio",
                    None if p.short_line_thr is None else short > p.short_line_thr,
                ),
                (
                    "char_dup_ratio",
                    None if p.char_duplicates_ratio is None else dup > p.char_duplicates_ratio,
                ),
                ("list_ratio", None if p.new_line_ratio is None else newlines > p.new_line_ratio),
            ],
        )
        return {
            "fineweb_line_punct_ratio": pa.array(punct),
            "fineweb_short_line_ratio": pa.array(short),
            "fineweb_char_dup_ratio": pa.array(dup),
            "fineweb_list_ratio": pa.array(newlines),
            "fineweb_quality_pass": passed,
            "fineweb_quality_reason": reason,
        }


def _literal_class(chars: str) -> str:
    """An RE2 character-class body matching exactly the given characters."""
    return "".join(f"\\x{{{ord(c):x}}}" for c in chars)
