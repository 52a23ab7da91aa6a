"""OpenAI-compatible HTTP (vLLM or SGLang servers, TGI, llama.cpp server, hosted APIs).

- at most ``concurrency`` requests in flight (a thread pool over blocking HTTP);
- ``timeout`` seconds per attempt (connect and each read);
- up to ``attempts`` tries with jittered exponential backoff on connection errors,
  timeouts, 429 and 5xx; a 400/413/422 (including context overflow) is final and
  becomes a ``bad_request`` result; other 4xx (401, 404: a wrong key or model) are
  final ``backend_error`` results whose detail names the status;
- the API key is read from the environment variable ``api_key_env`` at request
  time; it is never stored on the object, logged or put in ``info()``.

This is also the Spark path: executors call a server fleet with the same code.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from winnow.errors import ConfigError
from winnow.llm.base import BACKEND_ERROR, BAD_REQUEST, TIMEOUT, Backend, Request, Result

_RETRY_STATUS = {408, 409, 429}
_BAD_STATUS = {400, 413, 422}


class _Retry(Exception):
    def __init__(self, reason: str, detail: str):
        self.reason, self.detail = reason, detail


class OpenAIBackend(Backend):
    """Chat completions against ``base_url`` (e.g. ``http://host:8000/v1``)."""

    kind = "openai"

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        concurrency: int = 8,
        timeout: float = 60.0,
        attempts: int = 4,
        backoff: float = 0.5,
        api_key_env: str | None = None,
        revision: str | None = None,
        chat_template_hash: str | None = None,
        seeds_honoured: bool = True,
    ):
        super().__init__()
        url = urlsplit(base_url.rstrip("/"))
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigError(f"base_url {base_url!r}: expected http(s)://host[:port]/v1")
        self._url = url
        self.concurrency, self.timeout, self.attempts = concurrency, timeout, attempts
        self.backoff = backoff
        self.api_key_env = api_key_env
        if api_key_env and api_key_env not in os.environ:
            raise ConfigError(f"api_key_env: environment variable {api_key_env!r} is not set")
        self.revision, self.chat_template_hash = revision, chat_template_hash
        self.seeds_per_request = seeds_honoured
        self.model = model or self._served_model()
        self._lock = threading.Lock()
        self._rng = random.Random(0)  # jitter only; it never affects the text

    # -- HTTP ----------------------------------------------------------------------
    def _connection(self) -> http.client.HTTPConnection:
        https = self._url.scheme == "https"
        cls = http.client.HTTPSConnection if https else http.client.HTTPConnection
        return cls(self._url.hostname, self._url.port, timeout=self.timeout)

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key_env:
            headers["Authorization"] = "Bearer " + os.environ.get(self.api_key_env, "")
        return headers

    def _call(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        conn = self._connection()
        try:
            payload = json.dumps(body).encode() if body is not None else None
            conn.request(method, self._url.path + path, body=payload, headers=self._headers())
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def _served_model(self) -> str:
        """The first model the server lists (``GET /models``), when none is configured."""
        try:
            status, data = self._call("GET", "/models")
            models = json.loads(data)["data"] if status == 200 else []
        except (OSError, http.client.HTTPException, ValueError, KeyError) as exc:
            raise ConfigError(f"{self._url.geturl()}/models: cannot list models ({exc})") from None
        if not models:
            raise ConfigError(f"{self._url.geturl()}/models: HTTP {status}, no model listed")
        return models[0]["id"]

    # -- one request, with retries ---------------------------------------------------
    def _attempt(self, request: Request) -> Result:
        body = {
            "model": self.model,
            "messages": request.chat(),
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "seed": request.seed,
        }
        try:
            status, data = self._call("POST", "/chat/completions", body)
        except TimeoutError as exc:
            raise _Retry(TIMEOUT, f"no answer within {self.timeout}s ({exc})") from None
        except (OSError, http.client.HTTPException) as exc:
            raise _Retry(BACKEND_ERROR, f"connection failed: {type(exc).__name__}: {exc}") from None
        text = data[:200].decode(errors="replace")
        if status in _RETRY_STATUS or status >= 500:
            raise _Retry(BACKEND_ERROR, f"HTTP {status}: {text}")
        if status in _BAD_STATUS:
            return Result.failed(BAD_REQUEST, f"HTTP {status}: {text}")
        if status != 200:
            return Result.failed(BACKEND_ERROR, f"HTTP {status}: {text}")
        try:
            answer = json.loads(data)
            choice = answer["choices"][0]
            usage = answer.get("usage") or {}
            return Result(
                text=choice["message"]["content"] or "",
                finish_reason=choice.get("finish_reason") or "stop",
                prompt_tokens=int(usage.get("prompt_tokens", 0)),
                completion_tokens=int(usage.get("completion_tokens", 0)),
            )
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise _Retry(BACKEND_ERROR, f"malformed response ({exc}): {text}") from None

    def _one(self, request: Request) -> Result:
        for attempt in range(1, self.attempts + 1):
            try:
                result = self._attempt(request)
                result.attempts = attempt
                return result
            except _Retry as exc:
                if attempt == self.attempts:
                    return Result.failed(exc.reason, exc.detail, attempt)
                with self._lock:
                    self.stats.retries += 1
                    pause = self.backoff * 2 ** (attempt - 1) * (0.5 + self._rng.random())
                time.sleep(min(pause, 30.0))
        raise AssertionError("unreachable")

    def generate(self, requests, on_result=None):
        results: list[Result | None] = [None] * len(requests)
        start = time.perf_counter()

        def work(i: int) -> None:
            results[i] = self._one(requests[i])
            with self._lock:
                self.stats.requests += 1
                if on_result:
                    on_result(i, results[i])

        with ThreadPoolExecutor(max(1, min(self.concurrency, len(requests)))) as pool:
            list(pool.map(work, range(len(requests))))
        self.stats.seconds += time.perf_counter() - start
        return results

    def info(self) -> dict:
        return {
            "model": self.model,
            "revision": self.revision,
            "backend": self.kind,
            "version": "openai-compatible",  # not the URL: a fleet serves one model
            "chat_template_hash": self.chat_template_hash,
        }
