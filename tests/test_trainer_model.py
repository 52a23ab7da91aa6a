"""The GPT model: loss against torch's reference, causality, rotary relativity, presets."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from winnow.trainer.model import GPT, PRESETS, apply_rotary, preset, rotary_tables

torch.set_num_threads(1)


def tiny(**kw):
    torch.manual_seed(0)
    return GPT(preset("tiny", vocab_size=257, max_seq_len=64, **kw))


@pytest.mark.parametrize("mlp", ["swiglu", "relu2"])
def test_token_loss_matches_reference_cross_entropy(mlp):
    model = tiny(mlp=mlp)
    x = torch.randint(0, 257, (3, 40))
    y = torch.randint(0, 257, (3, 40))
    y[0, -5:] = -1
    ce, log_z = model(x, y)
    logits = model(x)
    assert logits.shape == (3, 40, 257)
    ref = F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-1, reduction="none")
    torch.testing.assert_close(ce.flatten(), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(log_z[1], torch.logsumexp(logits[1], -1))
    assert (log_z[0, -5:] == 0).all()


def test_causal_future_tokens_do_not_change_past_logits():
    model = tiny()
    x = torch.randint(0, 257, (1, 48))
    x2 = x.clone()
    x2[0, 30:] = torch.randint(0, 257, (18,))
    a, b = model(x), model(x2)
    torch.testing.assert_close(a[0, :30], b[0, :30])
    assert not torch.allclose(a[0, 30:], b[0, 30:])


def test_rotary_scores_depend_only_on_relative_position():
    torch.manual_seed(1)
    cos, sin = rotary_tables(16, 64, 100_000.0)
    q, k = torch.randn(16), torch.randn(16)

    def score(m, n):
        qm = apply_rotary(q.view(1, 1, 1, 16), cos[m], sin[m])
        kn = apply_rotary(k.view(1, 1, 1, 16), cos[n], sin[n])
        return float((qm * kn).sum())

    assert score(10, 3) == pytest.approx(score(50, 43), rel=1e-4, abs=1e-5)
    assert score(10, 3) != pytest.approx(score(10, 4), rel=1e-3)
    # rotation keeps norms
    rotated = apply_rotary(q.view(1, 1, 1, 16), cos[37], sin[37])
    assert float(rotated.norm()) == pytest.approx(float(q.norm()), rel=1e-5)


def test_rotary_tables_grow_for_longer_inputs():
    model = tiny()
    out = model(torch.randint(0, 257, (1, 100)))  # max_seq_len is 64
    assert out.shape == (1, 100, 257) and model.cos.shape[0] == 100


def test_vocab_padding_and_tied_embeddings():
    model = tiny()
    assert model.wte.weight.shape[0] == 384 and model.cfg.padded_vocab % 128 == 0
    assert model.lm_head.weight.data_ptr() == model.wte.weight.data_ptr()
    untied = tiny(tie_embeddings=False)
    assert untied.lm_head.weight.data_ptr() != untied.wte.weight.data_ptr()
    assert untied.num_params() == model.num_params() + 384 * 64


def test_preset_sizes():
    sizes = {}
    for name in PRESETS:
        with torch.device("meta"):
            sizes[name] = GPT(preset(name, vocab_size=50257)).num_params()
    assert 120e6 < sizes["p124m"] < 128e6 and 340e6 < sizes["p350m"] < 360e6
    assert sizes["tiny"] < sizes["p10m"] < sizes["p30m"] < sizes["p124m"]
    with pytest.raises(ValueError, match="unknown model preset"):
        preset("p7b")


@pytest.mark.parametrize("kw", [{}, {"mlp": "relu2", "tie_embeddings": False}])
@pytest.mark.parametrize("seq_len", [32, 128])
def test_flops_per_token_match_torch_flop_counter(kw, seq_len):
    """Forward + backward FLOPs counted by torch (math attention, full score matrix)."""
    model = tiny(**kw)
    x = torch.randint(0, 257, (2, seq_len))
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        ce, _ = model(x, x)
        ce.mean().backward()
    assert counter.get_total_flops() == model.flops_per_token(seq_len) * x.numel()


def test_initial_loss_is_near_uniform():
    model = tiny()
    x = torch.randint(0, 257, (4, 32))
    with torch.no_grad():
        ce, _ = model(x, torch.roll(x, -1, 1))
    assert abs(float(ce.mean()) - math.log(257)) < 0.3
