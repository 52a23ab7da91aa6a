"""The fast CPU path: a static embedding distilled from the transformer embedder.

Every vocabulary token gets one vector: the transformer's pooled, normalised
embedding of ``[CLS] token [SEP]`` (the model2vec recipe without its PCA and Zipf
weighting). A document's embedding is the mean of its tokens' vectors, normalised:
one table lookup per token instead of six attention layers, so hundreds of times
faster on a CPU, at some cost in accuracy (``benchmarks/skills.py`` measures both).
With a cache folder the whole vocabulary is distilled once (a few CPU-minutes for
MiniLM's 30,522 tokens) into a ``.npy`` file named by the embedder's identity;
without one, tokens are distilled as they are first met.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import xxhash

from winnow.files import atomic_write
from winnow.skills.embedder import Embedder, normalize


class StaticEmbedder:
    """``encode`` like ``Embedder``'s, from per-token vectors distilled from ``base``."""

    def __init__(self, base: Embedder, cache_dir: Path | None = None):
        self.base = base
        self.dim = base.dim
        self.identity = f"static distilled from {base.identity}"
        self._known: dict[int, np.ndarray] = {}
        self.vectors = self._load(cache_dir) if cache_dir else None

    def _load(self, cache_dir: Path) -> np.ndarray:
        path = Path(cache_dir) / f"static-{xxhash.xxh3_64_hexdigest(self.base.identity)}.npy"
        if path.exists():
            return np.load(path)
        vectors = distill(self.base)
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.save(buffer, vectors)
        atomic_write(path, buffer.getvalue())
        return vectors

    def _lookup(self, ids: np.ndarray) -> np.ndarray:
        """Token vectors of ``ids``; without a cache folder each distinct id is distilled on
        first use (the same vector as a full distillation gives)."""
        if self.vectors is not None:
            return self.vectors[ids]
        new = sorted(set(np.unique(ids).tolist()) - self._known.keys())
        self._known.update(zip(new, token_vectors(self.base, new), strict=True))
        return np.stack([self._known[i] for i in ids.tolist()])

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-norm float32 embeddings: the mean token vector of each text."""
        limit = (self.base.max_tokens - 2) * self.base.max_chunks
        ids = self.base.token_ids(texts, limit)
        lengths = np.array([len(row) for row in ids], dtype=np.int64)
        flat = np.fromiter((t for row in ids for t in row), dtype=np.int64, count=lengths.sum())
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        nonempty = lengths > 0
        if flat.size:
            starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])[nonempty]
            out[nonempty] = np.add.reduceat(self._lookup(flat), starts, axis=0)
        return normalize(out)


def distill(base: Embedder) -> np.ndarray:
    """One unit vector per vocabulary id: ``base``'s embedding of that token alone."""
    return token_vectors(base, range(len(base.tokenizer)))


def token_vectors(base: Embedder, ids) -> np.ndarray:
    """``base``'s embedding of ``[CLS] id [SEP]`` for each id, in batches."""
    tok, ids = base.tokenizer, list(ids)
    seqs = [[tok.cls_token_id, t, tok.sep_token_id] for t in ids]
    step = base.batch_size
    parts = [base.forward(seqs[i : i + step], 3) for i in range(0, len(seqs), step)]
    return np.concatenate(parts) if parts else np.zeros((0, base.dim), dtype=np.float32)
