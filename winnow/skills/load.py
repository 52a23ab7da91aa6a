"""Embedder params (shared by the ``skills`` and ``embed_sim`` stages) and a
per-process cache, so a worker loads its model once."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from winnow.skills.embedder import DEFAULT_MODEL, Embedder, resolve_model
from winnow.stages.base import Params

_LOADED: dict[tuple[str, str], object] = {}


class EmbedderParams(Params):
    model: str = DEFAULT_MODEL
    """``minilm`` (offline all-MiniLM-L6-v2), a sentence-transformers folder or a hub id."""
    mode: Literal["transformer", "static"] = "transformer"
    """``static``: per-token vectors distilled from the model (the fast CPU path)."""
    max_tokens: int = Field(default=256, ge=8)
    """Tokens per window, CLS and SEP included (capped at the model's maximum)."""
    max_chunks: int = Field(default=4, gt=0)
    """Windows embedded per document; text past them is ignored."""
    batch_size: int = Field(default=32, gt=0)
    """Rows per forward pass (padded to exactly this many on accelerators)."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """``bf16`` runs the model under bfloat16 autocast (about 2x on recent CPUs)."""
    device: str = "cpu"
    """A torch device: ``cpu``, ``cuda``, ``cuda:1``."""
    threads: int | None = Field(default=1, gt=0)
    """torch threads per worker process (``None``: torch's default, all cores)."""

    def key(self) -> str:
        """What the embeddings depend on: the params and the model's identity."""
        return (
            f"{self.model_dump_json(exclude={'threads', 'device'})} {resolve_model(self.model)[1]}"
        )

    def load(self, cache_dir: Path | None = None):
        """The embedder (an ``Embedder`` or a ``StaticEmbedder``), loaded once per process."""
        slot = (self.key(), str(cache_dir))
        if slot not in _LOADED:
            import torch

            if self.threads:
                torch.set_num_threads(self.threads)
            base = Embedder(
                self.model,
                max_tokens=self.max_tokens,
                max_chunks=self.max_chunks,
                batch_size=self.batch_size,
                precision=self.precision,
                device=self.device,
            )
            if self.mode == "static":
                from winnow.skills.static import StaticEmbedder

                base = StaticEmbedder(base, cache_dir)
            _LOADED[slot] = base
        return _LOADED[slot]
