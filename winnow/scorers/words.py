"""The word tokenizer and the character sets of the heuristic rules (RE2 syntax).

datatrove splits words with spaCy's English tokenizer; winnow uses a documented
regex approximation of it, built from the same ingredients and run as a few RE2
passes over the whole column:

1. text is cut into chunks at whitespace (Python's ``str.isspace`` set);
2. *infixes* split a chunk where spaCy would: a hyphen/dash/tilde or one of
   ``: < > = /`` between a letter or digit and a letter (``state-of-the-art``); a
   comma between letters; a period between a lower-case letter and a capital
   (``sql.DataFrame``); ``+ - * ^`` between digits (``2-3``); ellipses and symbol
   icons anywhere. URL-shaped chunks (a scheme, ``www.``, or dotted ASCII names
   ending in a lower-case label, like ``example.com/a-b``) are not split inside;
3. *prefixes* (opening brackets, quotes, ``# * _ $ = % +`` ...) are single tokens at
   the start of a chunk, *suffixes* (closing brackets, quotes, ``, ; : ! ? .`` ...)
   single tokens at its end; ``'s n't 're 've 'll 'd 'm``, ``can|not``, ``i|d`` and
   units after a number (``20|MB``, ``5|pm``, ``10|%``) are split off; ``e.g.``,
   ``U.S.``, ``A.``, a few title abbreviations and emoticons such as ``):`` stay whole;
4. whatever is left of a chunk is one token (``foo(x``, ``self._x``, ``3.14``).

On real documents it gives spaCy's exact word list for ~95% of them and the same
word count within 0.02%; the differences that remain, and their effect on filter
decisions, are listed in docs/scorers.md.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from winnow.scorers.columns import Segments, to_numpy

# Python's str.isspace() set (Arrow's utf8 whitespace functions use the same set).
WS = (
    r"\t\n\x0b\x0c\r\x1c-\x1f \x{85}\x{a0}\x{1680}\x{2000}-\x{200a}"
    r"\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}"
)
# str.splitlines() boundaries.
LINE_BREAK = r"\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x{85}\x{2028}\x{2029}]"

_QUOTES = "'\"”“`‘´’‚„»«「」『』（）〔〕【】《》〈〉⟦⟧"
_PUNCT = r"…,:;!?¿؟¡()\[\]{}<>_#*&。？！，、；：～·।،۔؛٪"
_CURRENCY = "$£€¥฿₽﷼₠-₿"
# Single characters split off the start (prefix) or end (suffix) of a chunk.
PREFIX = _PUNCT + _QUOTES + _CURRENCY + r"§%=+—–\p{So}"
SUFFIX = _PUNCT + _QUOTES + r"—–\p{So}"

# URL-shaped chunks are never split inside (spaCy's URL_MATCH, simplified): a scheme,
# ``www.``, or dotted names ending in a lower-case label (``example.com/a-b``,
# ``pytest.MonkeyPatch.context``), once prefixes and suffixes are peeled off.
_CHUNK_START = rf"(?:^|[{WS}])[{PREFIX}]*"
_CHUNK_TAIL = rf"[{SUFFIX}.]*(?:[{WS}]|$)"
_CHUNK_END = rf"({_CHUNK_TAIL})"
_SCHEME_URL = rf"(?:[A-Za-z0-9+.\-]{{2,}}://|www\.|and/or)[^{WS}]*"
_DOTTED = r"(?:[A-Za-z0-9_\-]+\.)+[a-z]{2,}"  # ASCII hosts only: keeps the scans fast
_PROTECT = rf"({_CHUNK_START}(?:{_SCHEME_URL}|{_DOTTED}/[^{WS}]*))"
_PROTECT_DOTTED = rf"({_CHUNK_START}(?:{_SCHEME_URL}|{_DOTTED}(?:[/?#:][^{WS}]*)?{_CHUNK_TAIL}))"
_HYPHEN = r"-{1,3}|–|—{1,2}|~"
_CONTRACTION = r"['’](?:[sSmMdD]|re|RE|ve|VE|ll|LL)|n['’]t|N['’]T"
_ELLIPSIS = r"\.\.+|…+"
# Unit, currency and "+" suffixes split off a number at the end of a chunk (``20MB``).
_UNITS = (
    r"km|m|dm|cm|mm|ha|µm|nm|yd|in|ft|kg|g|mg|µg|t|lb|oz|m/s|km/h|kmh|mph|hPa|Pa|mbar"
    r"|mb|MB|kb|KB|gb|GB|tb|TB|T|G|M|K|%|am|pm|\+|\$|£|€|¥"
)

# Pre-passes insert spaces at infix boundaries. Each pattern is ``URL | rule | rule``
# where a rule is ``(left)(infix)(right)``; the interleaved template re-emits the
# groups of whichever alternative matched with spaces around the infix, so a
# URL-shaped chunk passes through untouched. Matches consume their right context,
# so chains (``a-b-c``) need a second run of the same rule.
_T = r"\1\2\5 \3\6 \4\7"  # protect | rule | rule
_T2 = r"\1\4 \2\5 \3\6"  # rule | rule
_DASHES = rf"([\pL\pN])({_HYPHEN}|[:<>=/])(\pL)|(\pL)(,)(\pL)"
_DIGITS = r"(\pN)([+*^\-])([\pN\-])"
_PERIOD = r"(\p{Ll})(\.)(\p{Lu})"  # a period between a lower-case letter and a capital
_PASSES = [  # the first pass sees the original chunks
    (rf"{_PROTECT_DOTTED}|{_PERIOD}|{_DIGITS}", _T),
    (rf"{_PROTECT}|{_DASHES}", _T),
    (rf"{_PROTECT}|{_DASHES}", _T),
    (
        rf"([^{WS}]|{_CHUNK_START})({_CONTRACTION}){_CHUNK_END}"
        rf"|({_CHUNK_START}(?:[cC]an|[iI]))(not|[dm]){_CHUNK_END}",
        _T2,
    ),
    (rf"(\pN)({_UNITS}){_CHUNK_END}|()({_ELLIPSIS}|\p{{So}})()", _T2),
]
_ABBREV = (
    rf"(?:\p{{Lu}}\.)+(?:[{WS}]|$)|\pL\.(?:[{WS}]|$)"
    r"|(?:[eE]\.[gG]|[iI]\.[eE]|[aApP]\.[mM]|v\.s)\."
    r"|(?:Mr|Mrs|Ms|Dr|Prof|St|Jr|Sr|Inc|Ltd|Co|Corp|vs|Gen|Gov|Rep|Sen|Rev|Mt)\."
)
# One token per match; the replacement appends a space after each token.
TOKEN = "|".join(
    [
        _ELLIPSIS,
        rf"(?:{_CONTRACTION})(?:[{WS}]|$)",
        r"\):|\(:|:\*|''|:\]|\[:|8\)",
        _ABBREV,
        rf"(?:\+\pN|[^{WS}{PREFIX}])"
        rf"(?:[^{WS}]*(?:[^{WS}{SUFFIX}.%]|[^{WS}\pN]%|[^{WS}\p{{Lu}}]\p{{Lu}}\.))?",
        rf"[^{WS}]",
    ]
)


def _split_infixes(texts: pa.Array) -> pa.Array:
    for pattern, template in _PASSES:
        texts = pc.replace_substring_regex(texts, pattern, template)
    return texts


def tokenize(texts: pa.Array) -> Segments:
    """Words of each document, spaCy-English-like (see module doc)."""
    spaced = pc.replace_substring_regex(_split_infixes(texts), TOKEN, r"\0 ")
    pieces = Segments.from_lists(pc.utf8_split_whitespace(spaced))
    return pieces.select(pieces.lengths > 0)


def count_words(texts: pa.Array) -> np.ndarray:
    """``len(tokenize(text))`` per document, without building the words."""
    return to_numpy(pc.count_substring_regex(_split_infixes(texts), TOKEN)).astype(np.int64)


# Character-class bodies (RE2 syntax) for the rules' notions of punctuation.
# Sentence terminals: Unicode's Sentence_Terminal property (Unicode 14) plus three
# Khmer signs, the set datatrove uses for "a line ends in terminal punctuation".
TERMINAL = (
    "!.?\u0589\u061d-\u061f\u06d4\u0700-\u0702\u07f9\u0837\u0839\u083d-\u083e\u0964-\u0965"
    "\u104a-\u104b\u1362\u1367-\u1368\u166e\u1735-\u1736\u17d4-\u17d6\u17d9-\u17da\u1803"
    "\u1809\u1944-\u1945\u1aa8-\u1aab\u1b5a-\u1b5b\u1b5e-\u1b5f\u1b7d-\u1b7e\u1c3b-\u1c3c"
    "\u1c7e-\u1c7f\u203c-\u203d\u2047-\u2049\u2e2e\u2e3c\u2e53-\u2e54\u3002\ua4ff"
    "\ua60e-\ua60f\ua6f3\ua6f7\ua876-\ua877\ua8ce-\ua8cf\ua92f\ua9c8-\ua9c9\uaa5d-\uaa5f"
    "\uaaf0-\uaaf1\uabeb\ufe52\ufe56-\ufe57\uff01\uff0e\uff1f\uff61\U00010a56-\U00010a57"
    "\U00010f55-\U00010f59\U00010f86-\U00010f89\U00011047-\U00011048\U000110be-\U000110c1"
    "\U00011141-\U00011143\U000111c5-\U000111c6\U000111cd\U000111de-\U000111df"
    "\U00011238-\U00011239\U0001123b-\U0001123c\U000112a9\U0001144b-\U0001144c"
    "\U000115c2-\U000115c3\U000115c9-\U000115d7\U00011641-\U00011642\U0001173c-\U0001173e"
    "\U00011944\U00011946\U00011a42-\U00011a43\U00011a9b-\U00011a9c\U00011c41-\U00011c42"
    "\U00011ef7-\U00011ef8\U00011f43-\U00011f44\U00016a6e-\U00016a6f\U00016af5"
    "\U00016b37-\U00016b38\U00016b44\U00016e98\U0001bc9f\U0001da88"
)
# Symbol characters (a word made only of these is not a word for Gopher): ASCII
# punctuation, common typographic and full-width marks, control characters other
# than tab and newline, and the sentence terminals.
PUNCTUATION = (
    r"!-/:-@\[-`{-~\x00-\x08\x0b-\x1f\x7f-\x9f"
    "—–“”„’´«»…►━∶％１〈〉《》「」【】、，；．（）？！：～。" + TERMINAL
)
