"""The one interface every generation backend implements.

``generate(requests) -> results`` is synchronous and keeps order. A request that
fails (a 400 from a server, a prompt that does not fit the context, a connection
that never came back) becomes a ``Result`` with an ``error`` reason, never an
exception that kills the batch. ``info()`` fingerprints what produced the text
(model and its revision or file hash, backend and its version, chat template
hash), so a request cache keyed on it misses when any of them changes.

Local backends share one policy (``LocalBackend``): greedy requests run in
batches of ``batch_size`` (greedy output does not depend on the batch), sampled
requests run one at a time with their own seed, so seeds are honoured per request.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from winnow.llm.chat import ChatFormat

# Per-request error reasons (the stage turns them into rejection reasons).
BAD_REQUEST = "bad_request"  # the server rejected the request (400, context overflow)
TOO_LONG = "too_long"  # prompt + max_tokens does not fit the model's context
BACKEND_ERROR = "backend_error"  # transport failures or 5xx after every attempt
TIMEOUT = "timeout"  # no answer within the per-request timeout, after every attempt
TRANSPORT_ERRORS = frozenset({BACKEND_ERROR, TIMEOUT})


@dataclass(frozen=True)
class Request:
    """One chat completion: messages plus sampling. ``temperature == 0`` is greedy."""

    messages: tuple[tuple[str, str], ...]  # (role, content) pairs
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def chat(self) -> list[dict[str, str]]:
        return [{"role": r, "content": c} for r, c in self.messages]

    def sampling(self) -> dict:
        """Everything except the messages, as it enters the cache key."""
        return {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
        }


@dataclass
class Result:
    """What came back for one request."""

    text: str = ""
    finish_reason: str = "stop"  # "stop" | "length" | "error"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 1
    error: str | None = None  # one of the reasons above when the request failed
    detail: str = ""  # a short human-readable explanation of the error

    @classmethod
    def failed(cls, reason: str, detail: str, attempts: int = 1) -> Result:
        return cls(finish_reason="error", attempts=attempts, error=reason, detail=detail)

    def to_json(self) -> dict:
        return asdict(self)


OnResult = Callable[[int, Result], None]


@dataclass
class BackendStats:
    """Counters a backend keeps across calls (the stage reports them per chunk)."""

    requests: int = 0  # requests that reached the model or the server
    retries: int = 0
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


class Backend(ABC):
    """A text generator behind ``generate``; ``kind`` is its YAML name."""

    kind: ClassVar[str] = ""
    seeds_per_request: ClassVar[bool] = True
    """Whether two requests in one call may carry different seeds and each is honoured."""
    chat: ChatFormat | None = None
    """Tokenizer and chat template, for segmentation and the pre-flight context check."""
    context_length: int | None = None

    def __init__(self) -> None:
        self.stats = BackendStats()

    @abstractmethod
    def generate(self, requests: Sequence[Request], on_result: OnResult | None = None) -> list:
        """One ``Result`` per request, in order; ``on_result(i, result)`` is called as
        each one is ready (the stage appends it to its request cache right away)."""

    @abstractmethod
    def info(self) -> dict:
        """``model``, ``model_sha256`` or ``revision``, ``backend``, ``version``,
        ``chat_template_hash``: everything that decides the text for a given request."""

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release the model or the connections (default: nothing)."""


class LocalBackend(Backend):
    """An in-process model: subclasses implement ``_run_batch`` and ``prompt_tokens``."""

    def __init__(self, batch_size: int, context_length: int) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.context_length = context_length

    @abstractmethod
    def prompt_ids(self, request: Request) -> list[int]:
        """The token ids of the request's rendered chat prompt."""

    @abstractmethod
    def _run_batch(self, requests: list[Request], prompts: list[list[int]]) -> list[Result]:
        """Generate for requests that all fit the context; greedy ones come in batches,
        a sampled one alone."""

    def generate(self, requests, on_result=None):
        results: list[Result | None] = [None] * len(requests)
        pending: list[tuple[int, list[int]]] = []
        for i, req in enumerate(requests):
            ids = self.prompt_ids(req)
            if len(ids) + req.max_tokens > self.context_length:
                detail = f"{len(ids)} prompt + {req.max_tokens} new tokens > {self.context_length}"
                results[i] = Result.failed(TOO_LONG, detail)
                if on_result:
                    on_result(i, results[i])
            else:
                pending.append((i, ids))
        greedy = [p for p in pending if requests[p[0]].greedy]
        groups = [greedy[s : s + self.batch_size] for s in range(0, len(greedy), self.batch_size)]
        groups += [[p] for p in pending if not requests[p[0]].greedy]
        for group in groups:
            start = time.perf_counter()
            out = self._run_batch([requests[i] for i, _ in group], [ids for _, ids in group])
            self.stats.seconds += time.perf_counter() - start
            self.stats.requests += len(group)
            for (i, _), result in zip(group, out, strict=True):
                results[i] = result
                if on_result:
                    on_result(i, result)
        return results


def finish(ids: list[int], eos: set[int], max_tokens: int) -> tuple[list[int], str]:
    """Cut generated ids at the first end-of-sequence token or at ``max_tokens``."""
    for j, t in enumerate(ids[:max_tokens]):
        if t in eos:
            return ids[:j], "stop"
    if len(ids) < max_tokens:
        return ids, "stop"  # the generator stopped on its own (e.g. context end)
    return ids[:max_tokens], "length"
