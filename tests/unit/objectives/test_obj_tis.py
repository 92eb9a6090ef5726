"""Truncated importance-sampling weights for the rollout/learner mismatch."""

import math

import pytest
import torch

from alignrl.objectives.ppo import PPOParams, ppo_loss
from alignrl.objectives.tis import TISParams, tis_weights
from alignrl.ops import aggregate

F64 = torch.float64


def _inputs():
    # π_old/π_rollout = [1.5, 3, 0.5] on the response tokens; the 4th token is padding
    logp_rollout = torch.tensor([[-1.0, -2.0, -0.5, 0.0]], dtype=F64)
    logp_old = logp_rollout + torch.tensor([[math.log(1.5), math.log(3.0), math.log(0.5), 50.0]], dtype=F64)
    return logp_old, logp_rollout, torch.tensor([[True, True, True, False]])


def test_token_level_by_hand():
    w, m = tis_weights(*_inputs(), TISParams(cap=2.0))
    # min(·, 2): [1.5, 2, 0.5]; padding gets 1
    torch.testing.assert_close(w, torch.tensor([[1.5, 2.0, 0.5, 1.0]], dtype=F64), rtol=0, atol=1e-14)
    assert m["tis_truncated_frac"].item() == pytest.approx(1 / 3, abs=1e-15)
    assert m["tis_ratio_max"].item() == pytest.approx(3.0, abs=1e-14)
    assert m["tis_weight_mean"].item() == pytest.approx(4.0 / 3, abs=1e-14)
    assert m["tis_logp_diff_mean"].item() == pytest.approx((math.log(1.5) + math.log(3) + math.log(2)) / 3, abs=1e-14)


def test_sequence_level_by_hand():
    # product 1.5·3·0.5 = 2.25 -> min(2.25, 2) = 2 on every response token; with cap 3: 2.25
    w, _ = tis_weights(*_inputs(), TISParams(cap=2.0, level="sequence"))
    torch.testing.assert_close(w, torch.tensor([[2.0, 2.0, 2.0, 1.0]], dtype=F64), rtol=0, atol=1e-14)
    w, _ = tis_weights(*_inputs(), TISParams(cap=3.0, level="sequence"))
    torch.testing.assert_close(w[0, :3], torch.full((3,), 2.25, dtype=F64), rtol=0, atol=1e-14)


def test_weights_have_no_gradient_and_scale_the_policy_loss():
    logp_old, logp_rollout, mask = _inputs()
    logp_old = logp_old.clone().requires_grad_()
    w, _ = tis_weights(logp_old, logp_rollout, mask, TISParams())
    assert not w.requires_grad
    logp = logp_old.detach().clone().requires_grad_()
    adv = torch.tensor([[1.0, -1.0, 2.0, 0.0]], dtype=F64)
    out = ppo_loss(logp, logp_old.detach(), adv, mask, PPOParams(), weights=w)
    # at ratio 1: ℓ = −A, so L = mean(−w·A) = −(1.5·1 − 2·1 + 0.5·2)/3 = −0.5/3
    assert out.loss.item() == pytest.approx(-0.5 / 3, abs=1e-15)
    torch.testing.assert_close(out.loss, aggregate(-w * adv, mask), rtol=0, atol=1e-15)


def test_identical_policies_give_unit_weights():
    torch.manual_seed(0)
    lp = -torch.rand(3, 4, dtype=F64)
    w, m = tis_weights(lp, lp.clone(), torch.ones(3, 4, dtype=torch.bool), TISParams())
    assert (w == 1).all() and m["tis_truncated_frac"].item() == 0.0
    with pytest.raises(ValueError):
        TISParams(cap=0.0)
