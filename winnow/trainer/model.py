"""A compact decoder-only GPT for proxy-model ablations.

Read top to bottom: config and presets, the building blocks (RMSNorm, rotary
embeddings, attention, MLP), the block, the model. Choices follow current small-model
practice: pre-norm RMSNorm, RoPE (``rope_base`` is a knob: the Dataset Decomposition
paper found 100k better than 10k for long context), RMS-normalised queries and keys
(QK-norm, for stable training at high learning rates), SwiGLU or ReLU² MLP, causal
``scaled_dot_product_attention`` (flash kernels on GPU), no biases, and a vocabulary
padded to a multiple of 128 so the embedding and output matmuls use tensor cores.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from winnow.trainer.loss import linear_cross_entropy


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 257
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    mlp: Literal["swiglu", "relu2"] = "swiglu"
    mlp_hidden: int | None = None  # default: 8/3 * n_embd (SwiGLU) or 4 * n_embd (ReLU²)
    rope_base: float = 10_000.0
    qk_norm: bool = True
    tie_embeddings: bool = True
    max_seq_len: int = 1024  # rotary tables are precomputed up to here and grown on demand
    norm_eps: float = 1e-6

    @property
    def padded_vocab(self) -> int:
        return 128 * math.ceil(self.vocab_size / 128)

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def hidden(self) -> int:
        if self.mlp_hidden:
            return self.mlp_hidden
        if self.mlp == "relu2":
            return 4 * self.n_embd
        return 64 * math.ceil(8 * self.n_embd / 3 / 64)  # 3 matrices x 8/3 d = a 4d MLP's 8d²

    def to_dict(self) -> dict:
        return asdict(self)


# Names follow GPT-2's convention: total parameters with a 50k vocabulary and tied
# embeddings (p124m is GPT-2 small's shape, p350m GPT-2 medium's; p10m is ~11M).
PRESETS: dict[str, GPTConfig] = {
    "tiny": GPTConfig(n_layer=2, n_head=4, n_embd=64),
    "p10m": GPTConfig(n_layer=4, n_head=3, n_embd=192),
    "p30m": GPTConfig(n_layer=6, n_head=6, n_embd=384),
    "p124m": GPTConfig(n_layer=12, n_head=12, n_embd=768),
    "p350m": GPTConfig(n_layer=24, n_head=16, n_embd=1024),
}


def preset(name: str, **overrides) -> GPTConfig:
    """A preset config with some fields replaced (e.g. ``vocab_size``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
    return replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return F.rms_norm(x, (x.size(-1),), self.weight, self.eps)


def rotary_tables(head_dim: int, seq_len: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin, each (seq_len, head_dim / 2), computed in float64 for accuracy."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float64), inv_freq)
    return angles.cos().float(), angles.sin().float()


def apply_rotary(x, cos, sin):
    """Rotate pairs (x1[i], x2[i]) of the two halves of the head dimension; x is (B, H, T, D)."""
    x1, x2 = x.chunk(2, dim=-1)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0 and cfg.head_dim % 2 == 0
        self.n_head, self.head_dim = cfg.n_head, cfg.head_dim
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=False)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)
        self.q_norm = RMSNorm(cfg.head_dim, cfg.norm_eps) if cfg.qk_norm else nn.Identity()
        self.k_norm = RMSNorm(cfg.head_dim, cfg.norm_eps) if cfg.qk_norm else nn.Identity()

    def forward(self, x, cos, sin):
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, self.head_dim).unbind(dim=2)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H, T, D)
        q = apply_rotary(self.q_norm(q), cos, sin)
        k = apply_rotary(self.k_norm(k), cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.kind = cfg.mlp
        n_in = 2 * cfg.hidden if cfg.mlp == "swiglu" else cfg.hidden
        self.up = nn.Linear(cfg.n_embd, n_in, bias=False)
        self.down = nn.Linear(cfg.hidden, cfg.n_embd, bias=False)

    def forward(self, x):
        h = self.up(x)
        if self.kind == "swiglu":
            gate, value = h.chunk(2, dim=-1)
            h = F.silu(gate) * value
        else:
            h = F.relu(h).square()
        return self.down(h)


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.norm1 = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.attn = CausalSelfAttention(cfg)
        self.norm2 = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin):
        x = x + self.attn(self.norm1(x), cos, sin)
        return x + self.mlp(self.norm2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.padded_vocab, cfg.n_embd)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm_f = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.padded_vocab, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        cos, sin = rotary_tables(cfg.head_dim, cfg.max_seq_len, cfg.rope_base)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale residual outputs by depth
            if name.endswith(("attn.proj.weight", "mlp.down.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameter count (a tied table counted once); ``non_embedding`` leaves the
        token embedding table out."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.wte.weight.numel() if non_embedding else n

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token (PaLM appendix B): 6 per weight of every linear layer
        (the output head included, padded vocabulary and all), plus 12·layers·width·
        seq_len for attention scores and values, counted without the causal half."""
        linear = sum(m.weight.numel() for m in self.modules() if isinstance(m, nn.Linear))
        return 6 * linear + 12 * self.cfg.n_layer * self.cfg.n_embd * seq_len

    def forward(self, idx, targets=None):
        """Logits (B, T, vocab_size) in float32; with ``targets`` (B, T), where -1 marks
        positions without a target, the per-token cross-entropy and log-partition
        (each (B, T), zero at unmarked positions) instead."""
        T = idx.size(1)
        if T > self.cos.size(0):  # longer than any sequence seen so far: grow the tables
            cos, sin = rotary_tables(self.cfg.head_dim, T, self.cfg.rope_base)
            self.cos, self.sin = cos.to(self.cos.device), sin.to(self.sin.device)
        cos, sin = self.cos[:T], self.sin[:T]
        x = self.wte(idx)
        for block in self.blocks:
            x = block(x, cos, sin)
        x = self.norm_f(x)
        if targets is None:
            return self.lm_head(x)[..., : self.cfg.vocab_size].float()
        # Chunked when the batch's logits are large (winnow.trainer.loss).
        return linear_cross_entropy(x, self.lm_head.weight, targets, self.cfg.vocab_size)
