"""Cut a document into pieces of at most ``budget`` tokens, measured with the model's
own tokenizer.

Pieces are contiguous: joined in order they give the document back exactly. Cuts
prefer paragraph breaks, then line breaks, then sentence ends, then spaces, and
only as a last resort fall between two tokens. Every piece is re-counted as a
whole (a BPE may merge across a cut), so no piece ever exceeds the budget.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_SPLITS = [re.compile(r"(?<=\n\n)"), re.compile(r"(?<=\n)"), re.compile(r"(?<=[.!?] )"),
           re.compile(r"(?<= )")]  # fmt: skip


def _by_tokens(text: str, budget: int, count, offsets) -> list[str]:
    """Hard cuts between tokens, each piece re-counted."""
    pieces = []
    while text:
        spans = offsets(text)
        take = min(budget, len(spans))
        while True:
            end = spans[take - 1][1] if take < len(spans) else len(text)
            if count(text[:end]) <= budget or take == 1:
                break
            take -= 1
        pieces.append(text[:end])
        text = text[end:]
    return pieces


def _units(text: str, budget: int, count, offsets, level: int = 0) -> list[str]:
    """Split ``text`` into units that each fit the budget, coarsest splits first."""
    if count(text) <= budget:
        return [text]
    if level == len(_SPLITS):
        return _by_tokens(text, budget, count, offsets)
    parts = [p for p in _SPLITS[level].split(text) if p]
    if len(parts) == 1:
        return _units(text, budget, count, offsets, level + 1)
    return [u for p in parts for u in _units(p, budget, count, offsets, level + 1)]


def segments(
    text: str,
    budget: int,
    count: Callable[[str], int],
    offsets: Callable[[str], list[tuple[int, int]]],
) -> list[str]:
    """Greedily pack the units into pieces of at most ``budget`` tokens."""
    if budget < 1:
        raise ValueError("segment budget must be at least one token")
    pieces: list[str] = []
    current = ""
    for unit in _units(text, budget, count, offsets):
        if current and count(current + unit) > budget:
            pieces.append(current)
            current = unit
        else:
            current += unit
    if current or not pieces:
        pieces.append(current)
    return pieces
