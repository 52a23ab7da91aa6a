"""onnxruntime-genai: the fastest real CPU path for a small model.

SmolLM2-135M-Instruct as an int4 ONNX model runs ~110 tokens/s single stream on
one core pair here, against ~12 for transformers fp32 (see benchmarks/RESULTS.md).
Greedy requests are generated in padded batches; a sampled request runs alone with
its own ``random_seed``, so seeds are honoured per request.
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

from winnow.llm.base import LocalBackend, Request, Result, finish
from winnow.llm.chat import ChatFormat
from winnow.llm.models import file_sha256, folder_sha256, onnx_folder, resolve_model


class OnnxBackend(LocalBackend):
    """An onnxruntime-genai model from a GGUF (converted once) or a built ONNX folder."""

    kind = "onnx"

    def __init__(self, model: str, batch_size: int = 8, threads: int = 2):
        import onnxruntime_genai as og

        path = resolve_model(model)
        if path.suffix == ".gguf":
            self.folder = onnx_folder(path)
            self._fingerprint = {"model_sha256": file_sha256(path), "precision": "int4"}
        else:
            self.folder = path
            self._fingerprint = {"model_sha256": folder_sha256(path)}
        self.model_name = model
        config = og.Config(str(self.folder))
        options = {"intra_op_num_threads": threads, "inter_op_num_threads": 1}
        config.overlay(json.dumps({"model": {"decoder": {"session_options": options}}}))
        self._og = og
        self._model = og.Model(config)
        self.chat = ChatFormat(self.folder)
        genai = json.loads((Path(self.folder) / "genai_config.json").read_text())["model"]
        eos = genai["eos_token_id"]
        self._eos = set(eos if isinstance(eos, list) else [eos])
        self._pad = genai.get("pad_token_id", next(iter(self._eos)))
        super().__init__(batch_size, genai["context_length"])

    def info(self) -> dict:
        return {
            "model": self.model_name,
            **self._fingerprint,
            "backend": self.kind,
            "version": metadata.version("onnxruntime-genai"),
            "chat_template_hash": self.chat.template_hash,
        }

    def prompt_ids(self, request: Request) -> list[int]:
        return self.chat.encode(self.chat.render(request.chat()))

    def _run_batch(self, requests: list[Request], prompts: list[list[int]]) -> list[Result]:
        og = self._og
        width = max(len(p) for p in prompts)
        longest = max(r.max_tokens for r in requests)
        params = og.GeneratorParams(self._model)
        first = requests[0]
        options = {"max_length": width + longest, "batch_size": len(prompts)}
        if first.greedy:
            options["do_sample"] = False
        else:
            options.update(
                do_sample=True,
                temperature=first.temperature,
                top_p=first.top_p,
                top_k=0,
                random_seed=first.seed,
            )
        params.set_search_options(**options)
        generator = og.Generator(self._model, params)
        import numpy as np

        # Right padding with the pad id, the layout onnxruntime-genai's own
        # ``encode_batch`` produces; every row's new tokens start at ``width``.
        batch = np.full((len(prompts), width), self._pad, dtype=np.int32)
        for row, ids in enumerate(prompts):
            batch[row, : len(ids)] = ids
        generator.append_tokens(batch)
        while not generator.is_done():
            generator.generate_next_token()
        results = []
        for row, req in enumerate(requests):
            new = list(generator.get_sequence(row))[width:]
            ids, reason = finish(new, self._eos, req.max_tokens)
            results.append(Result(self.chat.decode(ids), reason, len(prompts[row]), len(ids)))
        return results
