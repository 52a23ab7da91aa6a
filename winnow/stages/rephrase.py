"""``rephrase``: LLM rewriting of documents (WRAP, Nemotron-CC, REWIRE, ProX) as one map
stage over a pluggable generation backend (``winnow.llm``).

Each row is routed to zero or more styles (``styles`` for every row, or the first
``routes`` entry whose DuckDB ``where`` holds, e.g. Nemotron-CC's rule: high
quality buckets to QA/distill/knowledge, low ones to the encyclopedic paraphrase).
Each (row, style, rollout) becomes a *job*: the text is cut into segments that fit
the token budget (the model's own tokenizer), each segment is one request, the
answers are parsed and validated (``winnow.rephrase.parse``) and re-joined in order.

Modes: ``append`` keeps every input row and adds one row per successful job (id
``<parent>~<style>~<rollout>``, ``parent_id`` set; counted as ``created``; failed
jobs go to ``rejected/`` with their reason); ``column`` writes the answer to a new
column (null plus a ``<column>_reason`` on failure); ``replace`` rewrites ``text``
(failures and ProX ``drop_doc`` are rejected). Every generated text carries
provenance columns (``rephrase_*``: style, template hash, model, backend, chat
template hash, sampling, seed, request keys, finish reason, tokens, attempts).

Resume per request: results are appended to a JSONL cache under the stage's pass
directory as they arrive, so a ``kill -9`` loses only requests in flight and the
re-run sends only the misses. Seeds derive from (stage seed, doc id, style,
segment, rollout); sampling is greedy by default.
"""

from __future__ import annotations

import hashlib
import importlib.util
from typing import ClassVar, Literal

import pyarrow as pa
from pydantic import Field, field_validator, model_validator

from winnow.errors import WinnowError
from winnow.llm.base import TRANSPORT_ERRORS
from winnow.llm.specs import REQUIRES, BackendSpec, OnnxSpec
from winnow.rephrase.assemble import assemble
from winnow.rephrase.jobs import Generator
from winnow.rephrase.templates import load_templates
from winnow.sql import check_expression
from winnow.stages.base import MapStage, Output, Params, Resources
from winnow.table import ID, TEXT


class Route(Params):
    where: str
    """DuckDB SQL boolean over the row's columns, e.g. ``quality_bucket >= 4``."""
    styles: list[str] = Field(min_length=1)
    """Styles for rows where ``where`` holds (the first matching route wins)."""

    _check = field_validator("where")(check_expression)


class RephraseParams(Params):
    backend: BackendSpec = Field(default_factory=OnnxSpec)
    """Generation backend: ``{kind: onnx|transformers|openai|vllm, ...}``."""
    styles: list[str] = Field(default_factory=lambda: ["wrap_medium"])
    """Styles applied to every row when ``routes`` is empty."""
    routes: list[Route] = Field(default_factory=list)
    """Route rows to styles by score columns; rows matching no route get none."""
    templates: dict[str, dict] = Field(default_factory=dict)
    """User templates by name (fields of ``winnow.rephrase.templates.Template``)."""
    template_file: str | None = None
    """A YAML file of user templates (name -> fields)."""
    mode: Literal["append", "column", "replace"] = "append"
    """``append`` new rows, add a ``column``, or ``replace`` the text."""
    column: str = "rephrased"
    """The new column in ``column`` mode."""
    rollouts: int = Field(default=1, ge=1)
    """Generations per (row, style); each has its own seed (``append`` mode only)."""
    max_tokens: int = Field(default=256, gt=0)
    """New tokens per request."""
    temperature: float = Field(default=0.0, ge=0)
    """0 is greedy (the default, reproducible on every backend)."""
    top_p: float = Field(default=1.0, gt=0, le=1)
    """Nucleus sampling mass (with ``temperature > 0``)."""
    segment_tokens: int | None = Field(default=None, gt=0)
    """Token budget per segment; default and upper bound: what fits the context with
    the template and ``max_tokens``."""
    max_error_rate: float = Field(default=0.05, ge=0, le=1)
    """Fail the chunk when more than this share of its requests fail in transport
    (connection errors, timeouts, 5xx after every attempt)."""
    text_column: str = TEXT
    """The column to rephrase (``append`` writes the new rows' text there too)."""
    cache: bool = True
    """Keep the per-request cache under the pass directory (resume per request)."""

    @model_validator(mode="after")
    def _consistent(self) -> RephraseParams:
        known = load_templates(self.templates, self.template_file)
        used = [s for r in self.routes for s in r.styles] if self.routes else self.styles
        for style in used:
            if style not in known:
                raise ValueError(f"unknown style {style!r}; known: {', '.join(sorted(known))}")
        single = all(len(r.styles) == 1 for r in self.routes) if self.routes else len(used) == 1
        if self.mode != "append" and (not single or self.rollouts != 1):
            raise ValueError(f"mode {self.mode!r} needs one style per row and rollouts: 1")
        for module, extra in REQUIRES[self.backend.kind].items():
            if importlib.util.find_spec(module) is None:
                raise ValueError(
                    f"backend {self.backend.kind!r} needs {module!r}: pip install 'winnow[{extra}]'"
                )
        return self


class Rephrase(MapStage):
    """Rewrite documents with an LLM; provenance on every generated text; resumable."""

    name = "rephrase"
    Params = RephraseParams
    materialize: ClassVar[bool] = True
    resources: ClassVar[Resources] = Resources(workers=1)
    requires: ClassVar[dict[str, str]] = {"tokenizers": "rephrase", "jinja2": "rephrase"}

    def prepare(self) -> None:
        """Convert the model once in the driver (cached by the GGUF's sha256)."""
        spec = self.params.backend
        if spec.kind in ("onnx", "transformers"):
            from winnow.llm.models import hf_folder, onnx_folder, resolve_model

            path = resolve_model(spec.model)
            if path.suffix == ".gguf":
                (onnx_folder if spec.kind == "onnx" else hf_folder)(path)

    def setup(self) -> None:
        self._templates = load_templates(self.params.templates, self.params.template_file)
        self._generator = Generator(self.params.backend.build(), self.params, self.seed)

    def _cache_path(self, table: pa.Table):
        if not (self.params.cache and self.run_dir):
            return None
        ids = "\n".join(table.column(ID).to_pylist()).encode()
        name = hashlib.sha256(ids).hexdigest()[:20]
        return self.run_dir / "stages" / self.stage_id / "requests" / f"{name}.jsonl"

    def process(self, table: pa.Table) -> Output:
        if not hasattr(self, "_generator"):
            self.setup()
        gen = self._generator
        styles = gen.route(table)
        texts = table.column(self.params.text_column).to_pylist()
        ids = table.column(ID).to_pylist()
        jobs = gen.plan_jobs(ids, texts, styles, self._templates)
        stats = gen.run_jobs(jobs, self._cache_path(table))
        failed, sent = stats["transport_errors"], stats["backend_requests"]
        if sent and failed / sent > self.params.max_error_rate:
            detail = next(r.detail for j in jobs for r in j.results if r.error in TRANSPORT_ERRORS)
            raise WinnowError(
                f"{failed:.0f} of {sent:.0f} requests failed after every attempt, above "
                f"max_error_rate {self.params.max_error_rate} (first: {detail})"
            )
        for job in jobs:
            gen.finish_job(job, texts[job.row], self._templates[job.style])
        for job in jobs:
            if job.reason:
                stats[f"failed_{job.reason}"] = stats.get(f"failed_{job.reason}", 0) + 1
        stats["prox_fallback"] = float(sum(job.fallback for job in jobs))
        out = assemble(table, jobs, self.params, gen.provenance, self._templates)
        out.stats.update(stats)
        return out


__all__ = ["Rephrase", "RephraseParams", "Route"]
