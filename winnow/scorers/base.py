"""The scorer contract and registry.

A scorer reads a :class:`~winnow.scorers.text.TextBatch` and returns new columns
(name -> Arrow array, one value per document). It never drops or changes rows: the
``score`` stage appends its columns and ``filter``/``select`` stages decide later.
Heuristic scorers return their measured statistics plus ``<name>_pass`` (bool) and
``<name>_reason`` (the first failing rule, null when passing), so thresholds can be
re-tuned by re-selecting on the statistics without re-scoring.

Scorers are named by a registry ``name`` (any ``Scorer`` subclass defined in a module
of this package) or by import path ``package.module:Class``. ``setup`` loads
expensive state (a model) once per worker process.
"""

from __future__ import annotations

from functools import cache
from typing import ClassVar

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from winnow.registry import import_class, missing_requirement, scan
from winnow.scorers.text import TextBatch


class ScorerParams(BaseModel):
    """Base for scorer params: unknown keys are rejected; attribute docstrings become the
    help text ``winnow stages`` shows."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class Scorer:
    """Adds columns computed from the text of each document."""

    name: ClassVar[str] = ""
    Params: ClassVar[type[ScorerParams]] = ScorerParams
    requires: ClassVar[dict[str, str]] = {}
    """Importable modules -> the pip extra providing each; checked when the pipeline loads."""

    def __init__(self, params: ScorerParams | None = None):
        self.params = params if params is not None else self.Params()

    def setup(self) -> None:
        """Load expensive state once per worker process (default: nothing)."""

    def score(self, batch: TextBatch) -> dict[str, pa.Array]:
        raise NotImplementedError

    @classmethod
    def outputs(cls, params: ScorerParams) -> list[str]:
        """Names of the columns ``score`` returns (default: score an empty batch)."""
        return list(cls(params).score(TextBatch(pa.array([], pa.string()))))


def decide(n: int, rules: list[tuple[str, np.ndarray | None]]) -> tuple[pa.Array, pa.Array]:
    """``(pass, reason)`` columns from ordered ``(reason, failed_mask)`` rules.

    The reason is the first rule (in list order) that failed; rules whose mask is
    ``None`` are disabled.
    """
    code = np.full(n, -1, dtype=np.int32)
    names = []
    for reason, failed in reversed(rules):
        if failed is None:
            continue
        names.append(reason)
        code[np.asarray(failed, dtype=bool)] = len(names) - 1
    passed = code < 0
    labels = np.array(names + [None], dtype=object)
    return pa.array(passed), pa.array(labels[code], pa.string())


@cache
def registry() -> dict[str, type[Scorer]]:
    """Registry name -> scorer class for every built-in scorer."""
    import winnow.scorers as package

    return scan(package, Scorer)


def resolve_scorer(use: str) -> type[Scorer]:
    """The scorer class for a registry name or ``package.module:Class``; ValueError if none."""
    if ":" in use:
        cls = import_class(use, Scorer, "scorer")
    else:
        scorers = registry()
        if use not in scorers:
            raise ValueError(
                f"unknown scorer {use!r}; registered scorers: {', '.join(sorted(scorers))}"
            )
        cls = scorers[use]
    problem = missing_requirement(cls.requires, f"scorer {use!r}")
    if problem:
        raise ValueError(problem)
    return cls
