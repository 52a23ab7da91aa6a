"""The optimizer and the learning-rate schedule of the proxy trainer."""

from __future__ import annotations

import math

import torch


def lr_at(step: int, total: int, cfg) -> float:
    """Learning rate at ``step`` (0-based) of ``total``: linear warmup, then cosine to
    ``min_lr_ratio * lr``, or WSD (constant, then linear decay over the last
    ``decay_fraction`` of steps), or constant."""
    peak, floor = cfg.lr, cfg.lr * cfg.min_lr_ratio
    if step < cfg.warmup_steps:
        return peak * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return peak
    if cfg.schedule == "cosine":
        span = max(1, total - cfg.warmup_steps)
        t = min(1.0, (step - cfg.warmup_steps) / span)
        return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * t))
    decay = max(1, round(cfg.decay_fraction * total))
    t = (step - (total - decay)) / decay
    return peak if t <= 0 else peak + (floor - peak) * min(1.0, t)


def make_optimizer(model: torch.nn.Module, cfg, fused: bool) -> torch.optim.AdamW:
    """AdamW; matrices decay, vectors (norm weights) do not."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    rest = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": rest, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, fused=fused
    )
