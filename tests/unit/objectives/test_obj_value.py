"""Clipped PPO value loss."""

import pytest
import torch

from alignrl.objectives.value import ValueParams, value_loss

F64 = torch.float64


def test_by_hand_clipped_and_unclipped():
    # ε_v = 0.2
    # t0: V = 1.0, V_old = 0.5, R = 2: (1 − 2)² = 1; V_clip = 0.7, (0.7 − 2)² = 1.69 -> ½·1.69 = 0.845, zero gradient
    # t1: V = 1.8, V_old = 1.7, R = 2: inside the clip range, both errors 0.04 -> ½·0.04 = 0.02, ∂/∂V = V − R = −0.2
    # token mean: (0.845 + 0.02)/2 = 0.4325; ∂L/∂V = [0, −0.2/2]
    v = torch.tensor([[1.0, 1.8]], dtype=F64, requires_grad=True)
    v_old = torch.tensor([[0.5, 1.7]], dtype=F64)
    ret = torch.tensor([[2.0, 2.0]], dtype=F64)
    out = value_loss(v, v_old, ret, torch.ones(1, 2, dtype=torch.bool), ValueParams(clip=0.2))
    assert out.loss.item() == pytest.approx(0.4325, abs=1e-14)
    out.loss.backward()
    torch.testing.assert_close(v.grad, torch.tensor([[0.0, -0.1]], dtype=F64), rtol=0, atol=1e-14)
    assert out.metrics["vf_clipfrac"].item() == 0.5
    assert out.metrics["value_mse"].item() == pytest.approx((1.0 + 0.04) / 2, abs=1e-14)


def test_no_clip_is_half_mse_and_clip_never_lowers_the_loss():
    torch.manual_seed(0)
    v, v_old, ret = (torch.randn(4, 6, dtype=F64) for _ in range(3))
    mask = torch.rand(4, 6) > 0.3
    plain = value_loss(v, v_old, ret, mask, ValueParams(clip=None)).loss
    torch.testing.assert_close(plain, 0.5 * ((v - ret) ** 2)[mask].mean(), rtol=0, atol=1e-15)
    clipped = value_loss(v, v_old, ret, mask, ValueParams(clip=0.1)).loss
    assert clipped >= plain


def test_masked_garbage_ignored_and_params_checked():
    v = torch.tensor([[0.0, 5.0]], dtype=F64, requires_grad=True)
    ret = torch.tensor([[1.0, float("inf")]], dtype=F64)
    out = value_loss(v, torch.zeros(1, 2, dtype=F64), ret, torch.tensor([[True, False]]), ValueParams())
    # only t0 counts: V = V_old = 0, R = 1 -> ½·(0 − 1)² = 0.5; the inf target on the padding is ignored
    assert out.loss.item() == pytest.approx(0.5, abs=1e-15)
    out.loss.backward()
    assert torch.isfinite(v.grad).all() and v.grad[0, 1].item() == 0.0
    with pytest.raises(ValueError):
        ValueParams(clip=0.0)
