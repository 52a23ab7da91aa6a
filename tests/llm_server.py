"""Test helpers for the LLM tests: the real SmolLM2 model (converted once per machine,
cached by the GGUF's sha256) and a loopback OpenAI-compatible server over it.

The server binds 127.0.0.1 only, serves ``GET /v1/models`` and
``POST /v1/chat/completions`` through the in-process ONNX backend, can inject
faults into the next requests (``500``, ``reset``, ``stall``, ``400``), counts the
completions it ran, and stops itself after ``max_requests`` or ``lifetime`` seconds
if the test does not stop it first.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from contextlib import nullcontext
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from winnow.llm.base import BAD_REQUEST, Request
from winnow.llm.chat import ChatFormat
from winnow.llm.models import onnx_folder, smollm2_gguf

MODEL = "smollm2-135m-instruct"

# Short documents for the real-model tests and the benchmark.
TOPICS = [
    "The mitochondria is the powerhouse of the cell. It makes energy for the body.",
    "Paris is the capital of France. It has many museums and parks along the Seine.",
    "Photosynthesis turns light into chemical energy. Plants store it as sugar.",
    "The stock market fell on Monday. Analysts blamed weak jobs data.",
    "Water boils at 100 degrees Celsius at sea level, and lower on mountains.",
    "To make pancakes, mix flour, eggs and milk, then fry them in butter.",
    "Python is a programming language. It is popular for data science.",
    "The Roman Empire lasted for centuries and shaped law across Europe.",
]


@cache
def model_dir():
    return onnx_folder(smollm2_gguf())


@cache
def onnx_backend(batch_size: int = 4):
    from winnow.llm.onnx import OnnxBackend

    return OnnxBackend(MODEL, batch_size=batch_size, threads=2)


def chat_format() -> ChatFormat:
    return ChatFormat(model_dir())


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # socketserver's default of 5 stalls 16 clients on SYN retries


class LoopbackServer:
    """An OpenAI-compatible server over a ``Backend``, for tests (use as a context manager)."""

    def __init__(self, backend, *, max_requests: int = 500, lifetime: float = 300.0):
        self.backend = backend
        self.faults: list[str] = []
        self.completions = 0  # requests that reached the model
        self.received = 0
        self._lock = threading.Lock()
        self._model_lock = threading.Lock()
        self._max, self._deadline = max_requests, time.monotonic() + lifetime
        self.stall_seconds = 3.0
        self.expected_key: str | None = None  # when set, require this bearer token
        self.parallel = False  # True: call the backend concurrently (a stateless stand-in)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                with server._lock:
                    server.received += 1
                    fault = server.faults.pop(0) if server.faults else None
                key = server.expected_key
                if key and self.headers.get("Authorization") != f"Bearer {key}":
                    return self._send(401, {"error": "invalid api key"})
                if fault == "500":
                    return self._send(500, {"error": "injected"})
                if fault == "400":
                    return self._send(400, {"error": "maximum context length exceeded"})
                if fault == "reset":  # RST instead of an answer
                    linger = struct.pack("ii", 1, 0)
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                    self.close_connection = True
                    return None
                if fault == "stall":
                    time.sleep(server.stall_seconds)
                    return None
                messages = tuple((m["role"], m["content"]) for m in body["messages"])
                req = Request(
                    messages,
                    int(body["max_tokens"]),
                    float(body.get("temperature", 0.0)),
                    float(body.get("top_p", 1.0)),
                    int(body.get("seed", 0)),
                )
                with nullcontext() if server.parallel else server._model_lock:
                    (result,) = server.backend.generate([req])
                with server._lock:
                    server.completions += 1
                if result.error == BAD_REQUEST or result.error == "too_long":
                    return self._send(400, {"error": result.detail})
                return self._send(
                    200,
                    {
                        "object": "chat.completion",
                        "model": MODEL,
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": result.text},
                                "finish_reason": result.finish_reason,
                            }
                        ],
                        "usage": {
                            "prompt_tokens": result.prompt_tokens,
                            "completion_tokens": result.completion_tokens,
                        },
                    },
                )

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._httpd.timeout = 0.2
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set() and self.received < self._max:
            if time.monotonic() > self._deadline:
                break
            self._httpd.handle_request()  # returns after ``timeout`` when idle
        self._httpd.server_close()

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def dead_url() -> str:
    """A loopback URL where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"
