"""Output head + cross-entropy without materialising the full logits.

``linear_cross_entropy(h, weight, targets)`` gives what the plain head gives
(``reference_cross_entropy``: logits ``h @ weight.T`` in float32, then per-token
``log Z - logit[target]`` and ``log Z``), but when the logits of the whole batch
would exceed ``LOGITS_BUDGET`` elements it computes them ``chunk`` rows at a time:
the forward pass keeps only ``log Z`` per token, and the backward pass recomputes
each chunk's logits to form ``softmax - onehot`` and its two matmuls. Peak memory
is one chunk's logits instead of ``tokens x vocab`` floats (p124m at 8k context and
64k tokens per micro-batch: 12.8 GB of fp32 logits otherwise), for one extra head
matmul per step (~10% of p124m's training FLOPs). Under autocast the matmuls run in
the autocast dtype and the softmax in float32, like the plain head.

Parity with the plain path (values and gradients, fp32, 1e-5) is tested in
tests/test_trainer_loss.py. ``liger-kernel``'s fused loss needs Triton, which
the CPU-only test machines lack, so this is winnow's own chunked autograd function.
"""

from __future__ import annotations

import torch

LOGITS_BUDGET = 1 << 30
"""Logit elements (tokens x padded vocab) above which the head is chunked: 4 GiB of
fp32 logits. Below it the plain head is faster (no recompute) and fits; p124m's GPU
micro-batch of 16k tokens (8.2e8 logits) stays plain, 64k tokens at 8k context chunk."""


def reference_cross_entropy(
    h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, vocab: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The plain head: ``(ce, log_z)`` per token over the first ``vocab`` logits (the
    rest are padding), zero where ``targets < 0``."""
    logits = (h @ weight.t())[:, :vocab].float()
    valid = targets >= 0
    log_z = torch.logsumexp(logits, dim=-1)
    target_logit = logits.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (log_z - target_logit) * valid, log_z * valid


def _compute_dtype(h: torch.Tensor) -> torch.dtype:
    device = h.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else h.dtype


def _logits(h: torch.Tensor, w: torch.Tensor, vocab: int) -> torch.Tensor:
    """Float32 logits of one chunk at the head's full (padded) width, padding at -inf
    so that it adds nothing to ``log Z`` and gets no gradient."""
    logits = (h @ w.t()).float()
    logits[:, vocab:] = float("-inf")
    return logits


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, targets, vocab, chunk):
        dtype = _compute_dtype(h)
        valid = targets >= 0
        safe = targets.clamp(min=0)
        ce = torch.empty(len(h), dtype=torch.float32, device=h.device)
        log_z = torch.empty_like(ce)
        w = weight.to(dtype)
        for lo in range(0, len(h), chunk):
            logits = _logits(h[lo : lo + chunk].to(dtype), w, vocab)
            log_z[lo : lo + chunk] = torch.logsumexp(logits, dim=-1)
            target_logit = logits.gather(-1, safe[lo : lo + chunk, None]).squeeze(-1)
            ce[lo : lo + chunk] = log_z[lo : lo + chunk] - target_logit
        ctx.save_for_backward(h, weight, targets, log_z)  # unmasked: exp() stays finite
        ctx.chunk, ctx.dtype, ctx.vocab = chunk, dtype, vocab
        return ce * valid, log_z * valid

    @staticmethod
    def backward(ctx, grad_ce, grad_log_z):
        h, weight, targets, log_z = ctx.saved_tensors
        chunk, dtype, vocab = ctx.chunk, ctx.dtype, ctx.vocab
        valid = (targets >= 0).float()
        g_ce, g_z = grad_ce.float() * valid, grad_log_z.float() * valid
        w = weight.to(dtype)
        grad_h = torch.empty_like(h) if ctx.needs_input_grad[0] else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
        for lo in range(0, len(h), chunk):
            h_c = h[lo : lo + chunk].to(dtype)
            logits = _logits(h_c, w, vocab)
            # d ce / d logits = softmax - onehot; d log_z / d logits = softmax.
            g = torch.exp(logits - log_z[lo : lo + chunk, None])
            g *= (g_ce[lo : lo + chunk] + g_z[lo : lo + chunk])[:, None]
            rows = torch.arange(len(g), device=g.device)
            g[rows, targets[lo : lo + chunk].clamp(min=0)] -= g_ce[lo : lo + chunk]
            g = g.to(dtype)
            if grad_h is not None:
                grad_h[lo : lo + chunk] = g @ w
            grad_w += (g.t() @ h_c).float()
        return grad_h, grad_w.to(weight.dtype), None, None, None


def linear_cross_entropy(
    h: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    vocab: int | None = None,
    budget: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ce, log_z)`` of the head ``weight`` (padded vocab, dim) on ``h`` (..., dim)
    for ``targets`` (...) over the first ``vocab`` logits, zero where ``targets < 0``;
    chunked above ``budget`` logits."""
    budget = LOGITS_BUDGET if budget is None else budget
    vocab = len(weight) if vocab is None else vocab
    shape = targets.shape
    h, targets = h.reshape(-1, h.shape[-1]), targets.reshape(-1)
    if len(h) * len(weight) <= budget:
        ce, log_z = reference_cross_entropy(h, weight, targets, vocab)
    else:
        chunk = max(1, budget // len(weight))
        ce, log_z = _ChunkedLinearCrossEntropy.apply(h, weight, targets, vocab, chunk)
    return ce.reshape(shape), log_z.reshape(shape)
