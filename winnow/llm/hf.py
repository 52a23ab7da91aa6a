"""transformers: CPU or GPU, any causal LM folder (or a GGUF, dequantised once).

Greedy requests run in left-padded batches with an explicit attention mask;
a sampled request runs alone after ``torch.manual_seed(request.seed)``, so seeds
are honoured per request.
"""

from __future__ import annotations

from importlib import metadata

from winnow.llm.base import LocalBackend, Request, Result, finish
from winnow.llm.chat import ChatFormat
from winnow.llm.models import file_sha256, folder_sha256, hf_folder, resolve_model


class TransformersBackend(LocalBackend):
    """A Hugging Face causal LM in fp32 (CPU) or the model's dtype on ``device``."""

    kind = "transformers"

    def __init__(self, model: str, batch_size: int = 8, threads: int = 1, device: str = "cpu"):
        import torch
        from transformers import AutoModelForCausalLM

        path = resolve_model(model)
        if path.suffix == ".gguf":
            self.folder = hf_folder(path)
            self._fingerprint = {"model_sha256": file_sha256(path)}
        else:
            self.folder = path
            self._fingerprint = {"model_sha256": folder_sha256(path)}
        if device == "cpu":
            torch.set_num_threads(threads)
        self._torch = torch
        self.device = device
        dtype = torch.float32 if device == "cpu" else "auto"
        self._model = AutoModelForCausalLM.from_pretrained(str(self.folder), dtype=dtype)
        self._model.to(device).eval()
        self.model_name = model
        self.chat = ChatFormat(self.folder)
        config = self._model.generation_config
        eos = config.eos_token_id
        self._eos = set(eos if isinstance(eos, list) else [eos])
        self._pad = config.pad_token_id if config.pad_token_id is not None else min(self._eos)
        context = getattr(self._model.config, "max_position_embeddings", 2048)
        super().__init__(batch_size, context)

    def info(self) -> dict:
        return {
            "model": self.model_name,
            **self._fingerprint,
            "backend": self.kind,
            "version": f"transformers {metadata.version('transformers')}, "
            f"torch {metadata.version('torch')}",
            "chat_template_hash": self.chat.template_hash,
        }

    def prompt_ids(self, request: Request) -> list[int]:
        return self.chat.encode(self.chat.render(request.chat()))

    def _run_batch(self, requests: list[Request], prompts: list[list[int]]) -> list[Result]:
        torch = self._torch
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self._pad, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, p in enumerate(prompts):
            ids[row, width - len(p) :] = torch.tensor(p)
            mask[row, width - len(p) :] = 1
        first = requests[0]
        sampling = {"do_sample": False}
        if not first.greedy:
            torch.manual_seed(first.seed)
            sampling = {"do_sample": True, "temperature": first.temperature, "top_p": first.top_p}
        with torch.inference_mode():
            out = self._model.generate(
                input_ids=ids.to(self.device),
                attention_mask=mask.to(self.device),
                max_new_tokens=max(r.max_tokens for r in requests),
                pad_token_id=self._pad,
                top_k=None,
                **sampling,
            )
        results = []
        for row, req in enumerate(requests):
            new, reason = finish(out[row, width:].tolist(), self._eos, req.max_tokens)
            results.append(Result(self.chat.decode(new), reason, len(prompts[row]), len(new)))
        return results
