"""The request cache: resume per request, not per chunk.

One append-only JSONL file per unit of work; each line is ``{"key": ..., "result":
{...}}``, written with a single ``write`` as soon as the result arrives, so a
``kill -9`` loses only requests in flight. A torn last line (the process died
mid-write) is dropped, and cut off before anything new is appended. Only
successful generations are cached: transport errors are retried on the next run.

The key is a SHA-256 of the model fingerprint (``Backend.info()``: model and its
file hash or revision, backend, version, chat template hash), the messages and
the sampling including the seed and ``max_tokens``; change any of them and the
request misses.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from winnow.llm.base import Request, Result


def request_key(fingerprint: dict, request: Request) -> str:
    payload = {
        "model": fingerprint,
        "messages": request.chat(),
        "sampling": request.sampling(),
    }
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class RequestCache:
    """Results by request key, backed by one JSONL file (created on first write)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.entries: dict[str, Result] = {}
        self.torn = 0
        self._fd: int | None = None
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        data = self.path.read_bytes()
        complete = data.rfind(b"\n") + 1
        if complete < len(data):
            self.torn = 1  # the writer died mid-line: drop the fragment
            with open(self.path, "r+b") as f:
                f.truncate(complete)
        for line in data[:complete].splitlines():
            record = json.loads(line)
            self.entries[record["key"]] = Result(**record["result"])

    def get(self, key: str) -> Result | None:
        return self.entries.get(key)

    def put(self, key: str, result: Result) -> None:
        if result.error is not None:
            return
        self.entries[key] = result
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        line = json.dumps({"key": key, "result": result.to_json()}, ensure_ascii=False) + "\n"
        os.write(self._fd, line.encode())

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __len__(self) -> int:
        return len(self.entries)
