"""The ProX executor: run the small cleaning programs a model writes for a document.

Written from the rules in Zhou et al. 2024 ("Programming Every Example"):

- document level: the program is ``keep_doc()`` or ``drop_doc()``;
- chunk level: the model sees the lines numbered from 0 and writes calls, one per
  line: ``remove_lines(start, end)`` drops lines ``start..end`` (0-based,
  inclusive), ``normalize(source_str, target_str)`` replaces every occurrence of
  ``source_str`` in the kept lines, ``keep_doc()`` does nothing, ``drop_doc()`` drops
  the document. Line numbers refer to the document as shown, whatever the order of
  the calls; replacements run after removals, in program order.
- a statement that does not parse, names an unknown function, has wrong arguments
  or an out-of-range line number is an error and is skipped; with **two or more**
  errors the program is not trusted and the original text is kept unchanged.

Programs are parsed with ``ast`` and only literal arguments are accepted; nothing
the model writes is ever executed as Python.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from winnow.rephrase.parse import first_code_fence

MAX_ERRORS = 2
_ARGS = {
    "remove_lines": ("start", "end"),
    "normalize": ("source_str", "target_str"),
    "keep_doc": (),
    "drop_doc": (),
}


@dataclass
class Outcome:
    text: str | None  # None: drop the document
    errors: int = 0
    fallback: bool = False  # too many errors: the original text was kept


def number_lines(text: str) -> str:
    """How a chunk is shown to the model: ``[000] first line``."""
    return "\n".join(f"[{i:03d}] {line}" for i, line in enumerate(text.split("\n")))


def _statements(program: str) -> list[str]:
    body = first_code_fence(program)
    body = body if body is not None else program
    lines = [s.strip() for s in body.split("\n")]
    return [s for s in lines if s and not s.startswith("#")]


def parse_call(statement: str) -> tuple[str, tuple]:
    """``name(args)`` -> (name, literal args in declared order); ValueError otherwise."""
    try:
        node = ast.parse(statement, mode="eval").body
    except SyntaxError as exc:
        raise ValueError(f"syntax: {exc.msg}") from None
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise ValueError("not a function call")
    name = node.func.id
    if name not in _ARGS:
        raise ValueError(f"unknown function {name!r}")
    names = _ARGS[name]
    values: dict[str, object] = {}
    if len(node.args) > len(names):
        raise ValueError(f"{name} takes {len(names)} arguments")
    try:
        for param, arg in zip(names, node.args, strict=False):
            values[param] = ast.literal_eval(arg)
        for kw in node.keywords:
            if kw.arg not in names or kw.arg in values:
                raise ValueError(f"{name}: bad argument {kw.arg!r}")
            values[kw.arg] = ast.literal_eval(kw.value)
    except (ValueError, SyntaxError) as exc:
        raise ValueError(f"{name}: {exc}") from None
    if set(values) != set(names):
        raise ValueError(f"{name} needs {', '.join(names)}")
    return name, tuple(values[p] for p in names)


def run_doc_program(program: str) -> bool | None:
    """Document level: True keep, False drop, None if no valid decision was found."""
    decisions = []
    for statement in _statements(program):
        try:
            name, _ = parse_call(statement)
        except ValueError:
            continue
        if name in ("keep_doc", "drop_doc"):
            decisions.append(name == "keep_doc")
    return decisions[0] if decisions else None


def run_chunk_program(program: str, text: str) -> Outcome:
    """Chunk level: apply the program's edits to ``text`` (lines split on ``\\n``)."""
    lines = text.split("\n")
    removed = [False] * len(lines)
    replacements: list[tuple[str, str]] = []
    errors, drop = 0, False
    for statement in _statements(program):
        try:
            name, args = parse_call(statement)
            if name == "remove_lines":
                start, end = args
                ok = all(isinstance(v, int) and not isinstance(v, bool) for v in args)
                if not ok or not 0 <= start <= end < len(lines):
                    raise ValueError(f"remove_lines({start!r}, {end!r}) out of range")
                removed[start : end + 1] = [True] * (end - start + 1)
            elif name == "normalize":
                source, target = args
                if not isinstance(source, str) or not isinstance(target, str) or not source:
                    raise ValueError("normalize needs two strings, the first non-empty")
                replacements.append((source, target))
            elif name == "drop_doc":
                drop = True
        except ValueError:
            errors += 1
    if errors >= MAX_ERRORS:
        return Outcome(text, errors, fallback=True)
    if drop:
        return Outcome(None, errors)
    kept = [line for line, gone in zip(lines, removed, strict=True) if not gone]
    for source, target in replacements:
        kept = [line.replace(source, target) for line in kept]
    return Outcome("\n".join(kept), errors)
