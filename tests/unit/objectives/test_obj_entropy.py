"""Token entropy from logits (float32 or wider, chunked over T) and the entropy bonus."""

import math

import pytest
import torch

from alignrl.objectives.entropy import EntropyParams, entropy_bonus, token_entropy

F64 = torch.float64


def test_by_hand_uniform_and_two_point():
    logits = torch.zeros(1, 2, 4, dtype=F64)
    logits[0, 1] = torch.tensor([0.0, 0.0, -1e4, -1e4])  # exp(−1e4) = 0 in float64: uniform over 2 tokens
    h = token_entropy(logits)
    # uniform over 4: ln 4; uniform over 2: ln 2
    torch.testing.assert_close(h, torch.tensor([[math.log(4.0), math.log(2.0)]], dtype=F64), rtol=0, atol=1e-14)


def test_matches_brute_force_and_chunking_changes_nothing_incl_gradient():
    torch.manual_seed(0)
    logits = torch.randn(3, 7, 11, dtype=F64, requires_grad=True)
    p = logits.softmax(-1)
    ref = -(p * p.log()).sum(-1)
    (g_ref,) = torch.autograd.grad(ref.sum(), logits)
    for chunk in (1, 3, 7, 100):
        h = token_entropy(logits, chunk)
        torch.testing.assert_close(h, ref, rtol=0, atol=1e-14)
        (g,) = torch.autograd.grad(h.sum(), logits)
        torch.testing.assert_close(g, g_ref, rtol=0, atol=1e-14)


def test_low_precision_logits_computed_in_float32():
    torch.manual_seed(1)
    logits = torch.randn(2, 3, 50).bfloat16()
    h = token_entropy(logits)
    assert h.dtype == torch.float32
    p = logits.float().softmax(-1)
    torch.testing.assert_close(h, -(p * p.log()).sum(-1), rtol=0, atol=1e-5)


def test_bonus_is_minus_coef_times_mean_entropy():
    torch.manual_seed(2)
    logits = torch.randn(2, 5, 6, dtype=F64)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    out = entropy_bonus(logits, mask, EntropyParams(coef=0.01))
    h = token_entropy(logits)[mask].mean()
    assert out.loss.item() == pytest.approx(-0.01 * h.item(), abs=1e-15)
    assert out.metrics["entropy"].item() == pytest.approx(h.item(), abs=1e-14)
    with pytest.raises(ValueError):
        EntropyParams(chunk_size=0)
