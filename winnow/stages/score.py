"""``score``: run a list of scorers over each batch in one pass; ``c4_clean``: C4 line cleaning.

``score`` only adds columns (statistics, ``*_pass`` flags, ``*_reason``, model
scores); ``filter`` and ``select`` stages decide later, so one scoring pass
supports many re-selections. Scorers share per-batch work (words, lines), so
running Gopher, C4 and FineWeb together tokenizes once. Example::

    - id: quality
      use: score
      params:
        scorers:
          - gopher_quality                      # a bare name: default params
          - use: fineweb_quality
            params: {char_duplicates_ratio: 0.1}
          - use: fasttext
            params: {model: models/dclm.bin, label: __label__hq, column: dclm_score}

Each scorer's params are validated against its own model when the pipeline loads.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, ValidationInfo, field_validator, model_validator

from winnow.scorers.base import Scorer, ScorerParams, resolve_scorer
from winnow.scorers.c4 import C4LineParams, c4_lines
from winnow.scorers.text import TextBatch
from winnow.stages.base import MapStage, Output, Params
from winnow.table import TEXT, set_column


class ScorerSpec(Params):
    """One scorer: a registry name (or ``package.module:Class``) and its params."""

    use: str
    """The scorer's registry name or ``package.module:Class``."""
    params: Any = Field(default_factory=dict, validate_default=True)
    """The scorer's params (see ``winnow stages score``)."""

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, value: Any) -> Any:
        return {"use": value} if isinstance(value, str) else value

    @field_validator("use")
    @classmethod
    def _known(cls, use: str) -> str:
        resolve_scorer(use)
        return use

    @field_validator("params")
    @classmethod
    def _validate_params(cls, value: Any, info: ValidationInfo) -> Any:
        use = info.data.get("use")
        if use is None:  # ``use`` itself was invalid and already reported
            return value
        scorer = resolve_scorer(use)
        if isinstance(value, scorer.Params):
            return value
        return scorer.Params.model_validate(value or {})

    def build(self) -> Scorer:
        return resolve_scorer(self.use)(self.params)


class ScoreParams(Params):
    scorers: list[ScorerSpec] = Field(min_length=1)
    """Scorers to run, in order; their columns are appended in this order."""
    text_column: str = TEXT
    """The column the scorers read."""

    @field_validator("scorers")
    @classmethod
    def _distinct_columns(cls, scorers: list[ScorerSpec]) -> list[ScorerSpec]:
        seen: dict[str, int] = {}
        for i, spec in enumerate(scorers):
            for column in resolve_scorer(spec.use).outputs(spec.params):
                if column in seen:
                    raise ValueError(
                        f"scorers[{i}] ({spec.use}) writes column {column!r} already written "
                        f"by scorers[{seen[column]}]; give one of them another column name"
                    )
                seen[column] = i
        return scorers


class Score(MapStage):
    """Append every configured scorer's columns; never drops a row."""

    name = "score"
    materialize = True  # attributes: re-tune the filters after it without re-scoring
    Params = ScoreParams

    def setup(self) -> None:
        self._scorers = [spec.build() for spec in self.params.scorers]
        for scorer in self._scorers:
            scorer.setup()

    def process(self, table: pa.Table) -> Output:
        if not hasattr(self, "_scorers"):
            self.setup()
        batch = TextBatch(table.column(self.params.text_column))
        stats: dict[str, float] = {}
        for scorer in self._scorers:
            for name, values in scorer.score(batch).items():
                table = set_column(table, name, values)
                if name.endswith("_pass"):
                    stats[name] = float(pc.sum(values).as_py() or 0)
        return Output(kept=table, stats=stats)


class C4CleanParams(C4LineParams):
    text_column: str = TEXT
    """The column whose text is rewritten to its surviving lines."""
    removed_column: str = "c4_removed_lines"
    """Provenance: how many lines the stage removed from each document."""
    keep_original: str | None = None
    """If set, the original text is kept in a column of this name."""


class C4Clean(MapStage):
    """Rewrite each text to the lines that survive C4's line rules (datatrove's output text).

    Document-level C4 rules (lorem ipsum, curly bracket, too few sentences) are the
    ``c4_quality`` scorer's job; this stage never drops a row.
    """

    name = "c4_clean"
    materialize = True
    Params = C4CleanParams

    def process(self, table: pa.Table) -> Output:
        p = self.params
        original = table.column(p.text_column).combine_chunks()
        batch = TextBatch(original)
        lines = c4_lines(batch, p)
        removed = lines.lines.counts - lines.lines.count(lines.kept)
        cleaned = lines.kept_text().cast(original.type)
        cleaned = pc.if_else(pc.is_null(original), pa.scalar(None, original.type), cleaned)
        if p.keep_original:
            table = set_column(table, p.keep_original, original)
        table = set_column(table, p.text_column, cleaned)
        table = set_column(table, p.removed_column, pa.array(removed, pa.int32()))
        return Output(kept=table, stats={"lines_removed": float(removed.sum())})


__all__ = ["C4Clean", "Score", "ScorerParams"]
