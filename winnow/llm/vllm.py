"""vLLM offline (``LLM.chat`` with one ``SamplingParams(seed=...)`` per request): the
GPU path. An optional extra (``pip install winnow[vllm]``), never installed in CI;
``vllm`` is imported only when this backend is built."""

from __future__ import annotations

import hashlib
import time
from importlib import metadata

from winnow.llm.base import Backend, Result


class VLLMBackend(Backend):
    """An in-process vLLM engine; requests are submitted in one call, order kept."""

    kind = "vllm"

    def __init__(self, model: str, *, gpu_memory_utilization: float = 0.85, max_model_len=None):
        from vllm import LLM

        self._llm = LLM(
            model=model,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            seed=0,
        )
        self.model_name = model
        tokenizer = self._llm.get_tokenizer()
        template = getattr(tokenizer, "chat_template", None) or ""
        self._template_hash = hashlib.sha256(template.encode()).hexdigest()
        self.context_length = self._llm.llm_engine.model_config.max_model_len
        super().__init__()

    def generate(self, requests, on_result=None):
        from vllm import SamplingParams

        params = [
            SamplingParams(
                temperature=r.temperature, top_p=r.top_p, max_tokens=r.max_tokens, seed=r.seed
            )
            for r in requests
        ]
        start = time.perf_counter()
        outputs = self._llm.chat([r.chat() for r in requests], params, use_tqdm=False)
        self.stats.seconds += time.perf_counter() - start
        self.stats.requests += len(requests)
        results = []
        for i, out in enumerate(outputs):
            choice = out.outputs[0]
            result = Result(choice.text, choice.finish_reason or "stop")
            result.prompt_tokens = len(out.prompt_token_ids or [])
            result.completion_tokens = len(choice.token_ids)
            results.append(result)
            if on_result:
                on_result(i, result)
        return results

    def info(self) -> dict:
        return {
            "model": self.model_name,
            "revision": None,
            "backend": self.kind,
            "version": metadata.version("vllm"),
            "chat_template_hash": self._template_hash,
        }
