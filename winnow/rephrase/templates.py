"""Rephrasing styles: versioned prompt templates with a content hash.

Built in, written for winnow from the papers' descriptions (not copied):

- WRAP (Maini et al. 2024), four styles: ``wrap_easy`` (simple words a child
  follows), ``wrap_medium`` (clear encyclopedic prose), ``wrap_hard`` (terse,
  dense scholarly language), ``wrap_qa`` (question/answer pairs);
- Nemotron-CC (Su et al. 2024), five: ``nemotron_wiki`` (paraphrase low-quality
  text as encyclopedic prose), ``nemotron_diverse_qa``, ``nemotron_distill``
  (shorter, clearer), ``nemotron_extract_knowledge`` (textbook-style passages,
  noise dropped), ``nemotron_knowledge_list`` (key facts as a bulleted list);
- REWIRE (Nguyen et al. 2025): ``rewire``, a guided rewrite that first reasons
  about the text's purpose and then writes an improved version between tags;
- ProX (Zhou et al. 2024): ``prox_doc`` (``keep_doc()`` / ``drop_doc()``) and
  ``prox_chunk`` (``remove_lines`` / ``normalize`` calls over numbered lines).

User templates come from the stage's ``templates:`` mapping or a YAML file with
the same fields. ``{text}`` in ``prompt`` is replaced by the document (segment).
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from winnow.config import format_validation_error, read_yaml
from winnow.errors import ConfigError

Parser = Literal["plain", "qa", "bullets", "tags", "code", "prox_doc", "prox_chunk"]


class Template(BaseModel):
    """One style: the messages to send and how to read the answer."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)

    version: int = 1
    """Bump when the wording changes (the hash changes anyway)."""
    system: str | None = None
    """Optional system message (else the model's chat template default)."""
    prompt: str
    """The user message; ``{text}`` is replaced by the document or segment."""
    parser: Parser = "plain"
    """How the answer is read: ``plain`` text, ``qa`` pairs, ``bullets``, the span
    between ``tag`` tags, the first ``code`` fence, or a ProX program."""
    prefix: str | None = None
    """If set, the answer must start with it (it is stripped); else ``missing_prefix``."""
    tag: str | None = None
    """For ``parser: tags``: the answer is the text between ``<tag>`` and ``</tag>``."""
    min_ratio: float = Field(default=0.0, ge=0)
    """Reject (``too_short``) when output chars / input chars is below this."""
    max_ratio: float = Field(default=100.0, gt=0)
    """Reject (``too_long_output``) when output chars / input chars is above this."""
    segment: bool = True
    """Split long documents to the token budget and re-join the answers in order."""

    @field_validator("prompt")
    @classmethod
    def _has_text(cls, prompt: str) -> str:
        if "{text}" not in prompt:
            raise ValueError("prompt must contain {text}")
        return prompt

    @property
    def hash(self) -> str:
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def messages(self, text: str) -> tuple[tuple[str, str], ...]:
        user = ("user", self.prompt.replace("{text}", text))
        return ((("system", self.system),) if self.system else ()) + (user,)


_QA = "Write each pair as two lines, 'Question: ...' then 'Answer: ...'."

BUILTIN: dict[str, Template] = {
    "wrap_easy": Template(
        prompt="Rewrite the text below so that a young child could follow it. Use short "
        "sentences and everyday words, and keep every fact.\n\n{text}",
        min_ratio=0.2,
        max_ratio=3.0,
    ),
    "wrap_medium": Template(
        prompt="Rewrite the text below as clear, well-organised encyclopedic prose, the way "
        "a good reference article would state it. Keep all the information.\n\n{text}",
        min_ratio=0.3,
        max_ratio=3.0,
    ),
    "wrap_hard": Template(
        prompt="Restate the text below in terse, precise, scholarly language, as a dense "
        "academic passage would. Keep all the information.\n\n{text}",
        min_ratio=0.2,
        max_ratio=3.0,
    ),
    "wrap_qa": Template(
        prompt="Turn the text below into a set of questions and answers that together cover "
        f"its content. {_QA}\n\n{{text}}",
        parser="qa",
    ),
    "nemotron_wiki": Template(
        prompt="The text below may be noisy or badly written. Paraphrase it as fluent "
        "encyclopedic prose. Start your answer with 'Paraphrase:'.\n\n{text}",
        prefix="Paraphrase:",
        min_ratio=0.3,
        max_ratio=3.0,
    ),
    "nemotron_diverse_qa": Template(
        prompt="Write several different kinds of questions about the text below (facts, "
        f"reasons, comparisons, yes/no) and answer each from the text. {_QA}\n\n{{text}}",
        parser="qa",
    ),
    "nemotron_distill": Template(
        prompt="Rewrite the text below more concisely and clearly, keeping the key ideas "
        "and dropping filler. Start your answer with 'Distilled:'.\n\n{text}",
        prefix="Distilled:",
        min_ratio=0.1,
        max_ratio=1.5,
    ),
    "nemotron_extract_knowledge": Template(
        prompt="Extract the knowledge in the text below and write it as textbook-style "
        "passages. Leave out navigation, ads and other noise.\n\n{text}",
        min_ratio=0.1,
        max_ratio=2.0,
    ),
    "nemotron_knowledge_list": Template(
        prompt="List the key facts stated in the text below, one per line, each line "
        "starting with '- '.\n\n{text}",
        parser="bullets",
    ),
    "rewire": Template(
        prompt="Here is a web document:\n\n{text}\n\nFirst think briefly about what the "
        "document is trying to say and how it could be more useful and better written. "
        "Then write the improved document between <rewritten> and </rewritten>.",
        parser="tags",
        tag="rewritten",
        min_ratio=0.2,
        max_ratio=3.0,
    ),
    "prox_doc": Template(
        prompt="Decide whether the document below is worth keeping for training a language "
        "model. Answer with exactly one call: keep_doc() or drop_doc().\n\n{text}",
        parser="prox_doc",
        segment=False,
    ),
    "prox_chunk": Template(
        prompt="The document below has numbered lines. Write a short program that cleans it, "
        "one call per line, inside a ```python fence. Available calls: "
        "remove_lines(start=, end=) removes lines start..end (inclusive, 0-based), "
        "normalize(source_str=, target_str=) replaces text, keep_doc() changes nothing.\n\n"
        "{text}",
        parser="prox_chunk",
    ),
}


def load_templates(inline: dict[str, dict], file: str | None) -> dict[str, Template]:
    """Built-ins, then templates from a YAML file, then inline ones (later wins)."""
    found = dict(BUILTIN)
    sources: list[tuple[str, dict]] = []
    if file:
        data = read_yaml(file, "template file")
        if not isinstance(data, dict):
            raise ConfigError(f"{file}: expected a mapping of template name -> fields")
        sources += [(f"{file}: {name}", (name, spec)) for name, spec in data.items()]
    sources += [(f"templates.{name}", (name, spec)) for name, spec in inline.items()]
    for where, (name, spec) in sources:
        try:
            found[name] = spec if isinstance(spec, Template) else Template.model_validate(spec)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, where)) from None
    return found
