"""Read a model's answer and decide whether it is usable; every rejection has a reason.

``check(answer, source, template, finish_reason)`` runs, in order:

1. ``empty``: nothing left after stripping whitespace and chatty lead-ins;
2. ``repetition``: a degenerate loop (most word 4-grams are repeats);
3. ``truncated``: the model hit ``max_tokens`` (``finish_reason == "length"``);
4. ``refusal``: "I'm sorry, I can't ..." and friends;
5. the template's parser: ``missing_prefix``, ``missing_tags`` (REWIRE's span),
   ``no_code`` (first code fence), ``unparsable_qa``, ``no_bullets``;
6. ``echo``: the answer is (nearly) the input again;
7. ``too_short`` / ``too_long_output``: output/input character ratio outside
   the template's ``[min_ratio, max_ratio]``.

Parsers also normalise: QA pairs become ``Question: ...\\nAnswer: ...`` blocks,
bullets become ``- item`` lines, a stripped prefix or tags leave only the content.
"""

from __future__ import annotations

import re
from collections import Counter

from winnow.rephrase.templates import Template

_LEAD_IN = re.compile(
    r"\A\s*(?:(?:sure|certainly|of course|okay|ok)[,.!]?\s*)?"
    r"(?:here(?:'s| is| are)|below is)[^\n]{0,80}:[ \t]*\n",
    re.IGNORECASE,
)
_REFUSAL = re.compile(
    r"\A\s*(?:i'?m sorry|i am sorry|i apologi[sz]e|i can(?:no|')t|i am unable|i'?m unable|"
    r"as an ai\b|i will not|i won'?t be able)",
    re.IGNORECASE,
)
_FENCE = re.compile(r"```[A-Za-z0-9_+-]*[ \t]*\n(.*?)```", re.DOTALL)
_QUESTION = re.compile(r"^\s*(?:\*\*)?(?:Q(?:uestion)?\s*\d*\s*[:.)])(?:\*\*)?\s*(.*)$", re.I)
_ANSWER = re.compile(r"^\s*(?:\*\*)?(?:A(?:nswer)?\s*\d*\s*[:.)])(?:\*\*)?\s*(.*)$", re.I)
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d{1,3}[.)])\s+(\S.*)$")
_WORD = re.compile(r"\w+")


def strip_lead_in(answer: str) -> str:
    """Drop a chatty first line such as ``Sure! Here is the rewritten text:``."""
    return _LEAD_IN.sub("", answer, count=1).strip()


def repetition_ratio(text: str, n: int = 4) -> float:
    """Share of word n-gram occurrences that repeat an earlier one (0 = none repeat)."""
    words = _WORD.findall(text.lower())
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if len(grams) < 12:
        return 0.0
    return 1.0 - len(Counter(grams)) / len(grams)


def is_echo(answer: str, source: str, threshold: float = 0.9) -> bool:
    """The answer repeats the source: word 3-gram sets overlap (Jaccard) >= threshold."""
    a, b = _WORD.findall(answer.lower()), _WORD.findall(source.lower())
    if a == b:
        return True
    ga = {tuple(a[i : i + 3]) for i in range(len(a) - 2)}
    gb = {tuple(b[i : i + 3]) for i in range(len(b) - 2)}
    if not ga or not gb:
        return False
    return len(ga & gb) / len(ga | gb) >= threshold


def between_tags(answer: str, tag: str) -> str | None:
    """The text between the first ``<tag>`` and the next ``</tag>``."""
    match = re.search(rf"<{re.escape(tag)}>(.*?)</{re.escape(tag)}>", answer, re.DOTALL)
    return match.group(1).strip() if match else None


def first_code_fence(answer: str) -> str | None:
    match = _FENCE.search(answer)
    return match.group(1) if match else None


def qa_pairs(answer: str) -> list[tuple[str, str]]:
    """``Question:``/``Q:`` lines followed by ``Answer:``/``A:`` lines (answers may span
    several lines); a question without an answer is dropped."""
    pairs: list[tuple[str, str]] = []
    question: str | None = None
    answer_lines: list[str] | None = None
    for line in answer.splitlines():
        if q := _QUESTION.match(line):
            if question is not None and answer_lines:
                pairs.append((question, " ".join(answer_lines).strip()))
            question, answer_lines = q.group(1).strip(), None
        elif question is not None and (a := _ANSWER.match(line)):
            answer_lines = [a.group(1).strip()]
        elif answer_lines is not None and line.strip():
            answer_lines.append(line.strip())
    if question is not None and answer_lines:
        pairs.append((question, " ".join(answer_lines).strip()))
    return [(q, a) for q, a in pairs if q and a]


def bullets(answer: str) -> list[str]:
    return [m.group(1).strip() for line in answer.splitlines() if (m := _BULLET.match(line))]


def parse(answer: str, template: Template) -> tuple[str | None, str | None]:
    """Apply the template's parser: (text, None) or (None, reason)."""
    text = answer
    if template.prefix is not None:
        if not text.startswith(template.prefix):
            return None, "missing_prefix"
        text = text[len(template.prefix) :].strip()
    kind = template.parser
    if kind == "tags":
        text = between_tags(text, template.tag or "")
        return (text, None) if text else (None, "missing_tags")
    if kind == "code":
        code = first_code_fence(text)
        return (code, None) if code and code.strip() else (None, "no_code")
    if kind == "qa":
        pairs = qa_pairs(text)
        if not pairs:
            return None, "unparsable_qa"
        return "\n\n".join(f"Question: {q}\nAnswer: {a}" for q, a in pairs), None
    if kind == "bullets":
        items = bullets(text)
        return ("\n".join(f"- {b}" for b in items), None) if items else (None, "no_bullets")
    return (text, None) if text else (None, "empty")


def check(
    answer: str, source: str, template: Template, finish_reason: str
) -> tuple[str | None, str | None]:
    """Parse and validate one answer to ``source``: (text, None) or (None, reason)."""
    text = strip_lead_in(answer)
    if not text:
        return None, "empty"
    if repetition_ratio(text) > 0.5:
        return None, "repetition"
    if finish_reason == "length":
        return None, "truncated"
    if _REFUSAL.match(text):
        return None, "refusal"
    text, reason = parse(text, template)
    if text is None:
        return None, reason
    if is_echo(text, source):
        return None, "echo"
    ratio = len(text) / max(1, len(source))
    if ratio < template.min_ratio:
        return None, "too_short"
    if ratio > template.max_ratio:
        return None, "too_long_output"
    return text, None
