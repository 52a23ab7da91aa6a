"""The chunked head + cross-entropy against the plain one: values and gradients in fp32
within 1e-5, masked targets, the model's own call site, and peak memory."""

from __future__ import annotations

import pytest
import torch

from winnow.trainer import loss as loss_mod
from winnow.trainer.loss import linear_cross_entropy, reference_cross_entropy
from winnow.trainer.model import GPT, GPTConfig

torch.set_num_threads(1)


def inputs(n=300, dim=32, vocab=1000, seed=0):
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(n, dim, generator=gen, requires_grad=True)
    w = (torch.randn(vocab, dim, generator=gen) * 0.5).requires_grad_()
    targets = torch.randint(0, vocab - 10, (n,), generator=gen)
    targets[::7] = -1  # positions without a target
    return h, w, targets


def grads(fn, h, w, targets, seed=1):
    """Values and gradients of a mean loss plus a z-loss (as train.py combines them),
    with random per-token weights so every row's gradient differs."""
    ce, log_z = fn(h, w, targets)
    gen = torch.Generator().manual_seed(seed)
    a, b = torch.rand(ce.shape, generator=gen), torch.rand(ce.shape, generator=gen)
    ((ce * a).sum() / len(ce) + 1e-4 * (log_z.square() * b).sum()).backward()
    out = ce.detach(), log_z.detach(), h.grad.clone(), w.grad.clone()
    h.grad, w.grad = None, None
    return out


@pytest.mark.parametrize("budget", [1000 * 1, 1000 * 7, 1000 * 64])
def test_chunked_matches_plain(budget):
    h, w, targets = inputs()
    want = grads(reference_cross_entropy, h, w, targets)
    got = grads(lambda *a: linear_cross_entropy(*a, budget=budget), h, w, targets)
    padded = grads(lambda *a: linear_cross_entropy(*a, vocab=990, budget=budget), h, w, targets)
    plain = grads(lambda *a: reference_cross_entropy(*a, vocab=990), h, w, targets)
    for g, r in zip(padded, plain, strict=True):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-5)
    assert (padded[3][990:] == 0).all()  # padding rows get no gradient
    for g, r in zip(got, want, strict=True):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-5)
    assert (got[0][::7] == 0).all() and (got[1][::7] == 0).all()


def test_batched_shape_and_model_call_site(monkeypatch):
    cfg = GPTConfig(vocab_size=200, n_layer=2, n_head=2, n_embd=32, max_seq_len=64)
    torch.manual_seed(0)
    model = GPT(cfg)
    idx = torch.randint(0, 200, (3, 40))
    targets = torch.randint(0, 200, (3, 40))
    targets[:, -5:] = -1
    logits = model(idx)
    valid = targets >= 0
    log_z = torch.logsumexp(logits, -1)
    plain = (log_z - logits.gather(-1, targets.clamp(min=0)[..., None])[..., 0]) * valid
    plain.sum().backward()
    want = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    monkeypatch.setattr(loss_mod, "LOGITS_BUDGET", 200 * 16)  # chunks of 16 tokens
    ce, lz = model(idx, targets)
    assert ce.shape == (3, 40)
    torch.testing.assert_close(ce, plain.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lz, (log_z * valid).detach(), atol=1e-5, rtol=1e-5)
    ce.sum().backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, want[name], atol=1e-5, rtol=1e-5, msg=name)


def test_peak_memory_is_one_chunk():
    """Saved for backward: inputs and one float per token, never tokens x vocab."""
    h, w, targets = inputs(n=2000, vocab=5000)
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        linear_cross_entropy(h, w, targets, budget=5000 * 100)
    assert max(saved) <= max(h.numel(), w.numel()) < 2000 * 5000
