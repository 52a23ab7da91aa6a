"""From rows to requests and back: routing, segmentation, the pre-flight context
check, the request cache, and reading the answers of each job.

A *job* is one (row, style, rollout). Its text is cut into segments that fit the
budget (context minus the template's own tokens minus ``max_tokens``); each segment
is one request, seeded from (stage seed, doc id, style, segment, rollout). A
request whose rendered prompt plus ``max_tokens`` does not fit the context is never
sent: its job fails with ``too_long``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from winnow.llm.base import TOO_LONG, TRANSPORT_ERRORS, Backend, Request, Result
from winnow.llm.cache import RequestCache, request_key
from winnow.rephrase.parse import check
from winnow.rephrase.prox import number_lines, run_chunk_program, run_doc_program
from winnow.rephrase.segment import segments
from winnow.rephrase.templates import Template
from winnow.sql import connect, evaluate


def job_seed(stage_seed: int, doc_id: str, style: str, segment: int, rollout: int) -> int:
    """The seed of one request, from the stage seed and where the request sits."""
    text = json.dumps([stage_seed, doc_id, style, segment, rollout])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") & 0x7FFFFFFF


@dataclass
class Job:
    """One (row, style, rollout): its segments' requests and, later, the outcome."""

    row: int
    style: str
    rollout: int
    pieces: list[str]
    requests: list[Request | None] = field(default_factory=list)  # None: does not fit
    keys: list[str] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)
    text: str | None = None  # the parsed, re-joined answer
    reason: str | None = None  # why the job failed
    fallback: bool = False  # ProX: too many program errors, the original text was kept


class Generator:
    """The stage's per-worker state: a backend, its fingerprint and the routing."""

    def __init__(self, backend: Backend, params, stage_seed: int):
        self.backend, self.params, self.seed = backend, params, stage_seed
        self.fingerprint = backend.info()
        self.chat, self.context = backend.chat, backend.context_length
        info = self.fingerprint
        ident = info.get("model_sha256") or info.get("revision") or ""
        sampling = {"temperature": params.temperature, "top_p": params.top_p}
        sampling["max_tokens"] = params.max_tokens
        self.provenance = {
            "rephrase_model": f"{info['model']}@{ident[:16]}" if ident else info["model"],
            "rephrase_backend": f"{info['backend']} {info['version']}",
            "rephrase_chat_template_hash": info.get("chat_template_hash"),
            "rephrase_sampling": json.dumps(sampling, sort_keys=True, separators=(",", ":")),
        }
        self._con = connect()

    def route(self, table: pa.Table) -> list[list[str]]:
        """The styles of each row: ``styles``, or the first route whose ``where`` holds."""
        routes = self.params.routes
        if not routes:
            return [list(self.params.styles)] * table.num_rows
        exprs = {f"r{i}": r.where for i, r in enumerate(routes)}
        flags = evaluate(self._con, table, exprs).to_pydict()
        out = []
        for row in range(table.num_rows):
            hit = next((r for i, r in enumerate(routes) if flags[f"r{i}"][row]), None)
            out.append(list(hit.styles) if hit else [])
        return out

    def _budget(self, template: Template) -> int | None:
        """Tokens per segment, or None when the text is sent whole."""
        if self.chat is None or self.context is None or not template.segment:
            return None
        overhead = self.chat.count(self.chat.render(_chat(template.messages(""))))
        room = self.context - self.params.max_tokens - overhead - 16  # slack for joins
        if self.params.segment_tokens:
            room = min(room, self.params.segment_tokens)
        return room if room >= 1 else None

    def _segments(self, text: str, budget: int, template: Template) -> list[str]:
        """Segments measured as the model will see them (ProX chunks with line numbers)."""
        count = self.chat.count
        if template.parser == "prox_chunk":
            count = lambda piece: self.chat.count(number_lines(piece))  # noqa: E731
        return segments(text, budget, count, self.chat.offsets)

    def _fits(self, request: Request) -> bool:
        if self.chat is None or self.context is None:
            return True
        prompt = self.chat.count(self.chat.render(request.chat()))
        return prompt + request.max_tokens <= self.context

    def plan_jobs(self, ids, texts, styles, templates: dict[str, Template]) -> list[Job]:
        p = self.params
        jobs = []
        budgets: dict[str, int | None] = {}
        for row, (doc_id, text, row_styles) in enumerate(zip(ids, texts, styles, strict=True)):
            for style in row_styles:
                template = templates[style]
                if style not in budgets:
                    budgets[style] = self._budget(template)
                budget = budgets[style]
                pieces = self._segments(text, budget, template) if budget else [text]
                for rollout in range(p.rollouts):
                    job = Job(row, style, rollout, pieces)
                    for k, piece in enumerate(pieces):
                        shown = (
                            number_lines(piece.rstrip("\n"))
                            if template.parser == "prox_chunk"
                            else piece
                        )
                        seed = job_seed(self.seed, doc_id, style, k, rollout)
                        req = Request(
                            template.messages(shown), p.max_tokens, p.temperature, p.top_p, seed
                        )
                        fits = self._fits(req)
                        job.requests.append(req if fits else None)
                        job.keys.append(request_key(self.fingerprint, req) if fits else "")
                    jobs.append(job)
        return jobs

    def run_jobs(self, jobs: list[Job], cache_path: Path | None) -> dict[str, float]:
        """Fill every job's results from the cache or the backend; return the stats."""
        cache = RequestCache(cache_path) if cache_path else None
        known: dict[str, Result] = {}
        misses: dict[str, Request] = {}
        for job in jobs:
            for key, req in zip(job.keys, job.requests, strict=True):
                if req is None or key in known or key in misses:
                    continue
                hit = cache.get(key) if cache is not None else None
                if hit is not None:
                    known[key] = hit
                else:
                    misses[key] = req
        hits = len(known)
        keys = list(misses)
        before = (self.backend.stats.retries, self.backend.stats.seconds)

        def store(i: int, result: Result) -> None:
            if cache is not None:
                cache.put(keys[i], result)

        try:
            for key, result in zip(
                keys, self.backend.generate(list(misses.values()), store), strict=True
            ):
                known[key] = result
        finally:
            if cache is not None:
                cache.close()
        for job in jobs:
            job.results = [
                known[k]
                if r is not None
                else Result.failed(TOO_LONG, "prompt + max_tokens > context")
                for k, r in zip(job.keys, job.requests, strict=True)
            ]
        fresh = [known[k] for k in keys]
        return {
            "requests": float(sum(len(j.requests) for j in jobs)),
            "cache_hits": float(hits),
            "backend_requests": float(len(keys)),
            "retries": float(self.backend.stats.retries - before[0]),
            "prompt_tokens": float(sum(r.prompt_tokens for r in fresh)),
            "completion_tokens": float(sum(r.completion_tokens for r in fresh)),
            "generation_seconds": self.backend.stats.seconds - before[1],
            "transport_errors": float(sum(r.error in TRANSPORT_ERRORS for r in fresh)),
        }

    def finish_job(self, job: Job, source: str, template: Template) -> None:
        """Parse and validate the answers; set ``job.text`` or ``job.reason``."""
        failed = next((r for r in job.results if r.error), None)
        if failed is not None:
            job.reason = failed.error
            return
        if template.parser == "prox_doc":
            decision = run_doc_program(job.results[0].text)
            if decision is False:
                job.reason = "prox_drop_doc"
            else:  # keep_doc(), or no decision found: like a failed program, keep the text
                job.text, job.fallback = source, decision is None
            return
        out = []
        for piece, result in zip(job.pieces, job.results, strict=True):
            if template.parser == "prox_chunk":
                body = piece.rstrip("\n")
                outcome = run_chunk_program(result.text, body)
                if outcome.text is None:
                    job.reason = "prox_drop_doc"
                    return
                job.fallback |= outcome.fallback
                out.append(outcome.text + piece[len(body) :])
                continue
            text, reason = check(result.text, piece, template, result.finish_reason)
            if text is None:
                job.reason = reason
                return
            out.append(text)
        job.text = "".join(out) if template.parser == "prox_chunk" else "\n\n".join(out)


def _chat(messages) -> list[dict[str, str]]:
    return [{"role": r, "content": c} for r, c in messages]
