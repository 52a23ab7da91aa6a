"""Skill extractors: what skills does each reference document need?

- ``keyphrase`` (the default): YAKE keyphrases, unsupervised and offline.
- ``labels``: a closed list the user gives; documents are assigned to labels by
  relabelling only (nothing is extracted, nothing is merged).
- ``llm``: an instruct model (any ``winnow.llm`` backend) lists the skills as a JSON
  array; ``parse_skills`` reads its answer and says why when it cannot. A document
  whose answer is unusable is asked again (``retries`` times, sampled with a seed per
  attempt); each failure's reason is counted into the graph's stats.

Every extractor returns, per document, a list of normalised skill names
(lowercase, single spaces, no surrounding punctuation), without duplicates.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Literal

from pydantic import Field, model_validator

from winnow.llm.specs import BackendSpec
from winnow.stages.base import Params

PROMPT = (
    "List the {top} most important skills a reader needs for this document, as a JSON "
    "array of short phrases.\n\nDocument:\n{document}"
)
EXAMPLE = (
    ("user", PROMPT.format(top=3, document="Open a file and return its lines as a list.")),
    ("assistant", '["file handling", "reading text files", "python lists"]'),
)
"""A one-shot example shown before each document (small models follow the format)."""

_SPACES = re.compile(r"\s+")
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")


def normalize_skill(name: str) -> str:
    """Lowercase, collapse whitespace, strip quotes and punctuation at the ends."""
    return _SPACES.sub(" ", name).strip().strip(".,;:!?\"'`()[]{}").strip().lower()


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for name in map(normalize_skill, names):
        if name and name not in seen:
            seen[name] = None
    return list(seen)


class ExtractorParams(Params):
    kind: Literal["keyphrase", "labels", "llm"] = "keyphrase"
    """``keyphrase`` (YAKE), ``labels`` (a closed list) or ``llm`` (an instruct model)."""
    top: int = Field(default=5, gt=0)
    """Keyphrases kept per document (``keyphrase``), skills asked for (``llm``)."""
    max_ngram: int = Field(default=3, gt=0)
    """Longest keyphrase in words (``keyphrase``)."""
    language: str = "en"
    """YAKE's stop-word language."""
    labels: list[str] = Field(default_factory=list)
    """The closed list of skills (``labels``), used verbatim as skill names."""
    backend: BackendSpec | None = None
    """Generation backend of ``llm``: ``{kind: onnx|transformers|openai|vllm, ...}``."""
    retries: int = Field(default=2, ge=0)
    """Extra attempts for a document whose answer is unusable (``llm``)."""
    max_chars: int = Field(default=2000, gt=0)
    """Characters of each document shown to the model (``llm``)."""

    @model_validator(mode="after")
    def _labels_given(self):
        if (self.kind == "labels") != bool(self.labels):
            raise ValueError("labels: give a non-empty list with kind 'labels', and only then")
        if self.kind == "llm" and self.backend is None:
            raise ValueError("backend: kind 'llm' needs a generation backend")
        return self


class KeyphraseExtractor:
    """YAKE keyphrases; deterministic (no sampling, no model)."""

    def __init__(self, params: ExtractorParams):
        import yake

        self.top = params.top
        self._yake = yake.KeywordExtractor(lan=params.language, n=params.max_ngram, top=params.top)
        self.identity = f"yake {_version('yake')} n={params.max_ngram} top={params.top}"

    def extract(self, texts: list[str]) -> list[list[str]]:
        return [_unique([k for k, _ in self._yake.extract_keywords(t)])[: self.top] for t in texts]


class LLMExtractor:
    """Skills listed by an instruct model; ``failures`` counts unusable answers by reason."""

    def __init__(self, params: ExtractorParams):
        self.params = params
        self.backend = params.backend.build()
        info = json.dumps(self.backend.info(), sort_keys=True)
        self.identity = f"llm {info} top={params.top} retries={params.retries}"
        self.failures: Counter[str] = Counter()

    def _request(self, text: str, attempt: int):
        from winnow.llm.base import Request

        prompt = PROMPT.format(top=self.params.top, document=text[: self.params.max_chars])
        sampled = attempt > 0  # the first try is greedy, retries sample with their own seed
        request = Request(
            (*EXAMPLE, ("user", prompt)), 128, temperature=0.7 if sampled else 0.0, seed=attempt
        )
        return request, prompt

    def extract(self, texts: list[str]) -> list[list[str]]:
        out: list[list[str]] = [[] for _ in texts]
        pending = list(range(len(texts)))
        for attempt in range(self.params.retries + 1):
            asked = [self._request(texts[i], attempt) for i in pending]
            results = self.backend.generate([r for r, _ in asked])
            still = []
            for i, (_, prompt), result in zip(pending, asked, results, strict=True):
                skills, reason = (
                    ([], result.error) if result.error else parse_skills(result.text, prompt)
                )
                if reason is None:
                    out[i] = skills[: self.params.top]
                else:
                    self.failures[reason] += 1
                    still.append(i)
            pending = still
            if not pending:
                break
        return out


def parse_skills(answer: str, prompt: str = "") -> tuple[list[str], str | None]:
    """Skills from an LLM answer, or ``([], reason)`` when it is unusable.

    Accepts a JSON array of strings or an object with a ``skills`` array, optionally
    in a code fence. Reasons: ``empty``, ``echoed prompt``, ``invalid json``,
    ``not a list of strings``, ``no skills``.
    """
    text = _FENCE.sub("", answer.strip()).strip()
    if not text:
        return [], "empty"
    if prompt and text.startswith(prompt.strip()[:40]):
        return [], "echoed prompt"
    start = min((i for i in (text.find("["), text.find("{")) if i >= 0), default=-1)
    try:
        value = json.loads(text[start:] if start >= 0 else text)
    except json.JSONDecodeError:
        return [], "invalid json"
    if isinstance(value, dict):
        value = value.get("skills")
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return [], "not a list of strings"
    skills = _unique(value)
    return (skills, None) if skills else ([], "no skills")


def _version(package: str) -> str:
    import importlib.metadata

    return importlib.metadata.version(package)


def build_extractor(params: ExtractorParams):
    """The extractor for ``params.kind``; ``None`` for ``labels`` (nothing to extract)."""
    if params.kind == "keyphrase":
        return KeyphraseExtractor(params)
    if params.kind == "llm":
        return LLMExtractor(params)
    return None
