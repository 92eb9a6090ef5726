"""CoPG: −∇L is the contrastive policy-gradient update, hand value, order-free pairs."""

import pytest
import torch

from alignrl.objectives.copg import CoPGParams, copg_loss
from alignrl.objectives.preference_base import PreferenceInputs
from alignrl.registry import PREFERENCE_LOSSES

F64 = torch.float64


def _pairs(seed=0, B=8):
    g = torch.Generator().manual_seed(seed)
    lw = (-torch.rand(B, generator=g, dtype=F64) * 20).requires_grad_()
    ll = (-torch.rand(B, generator=g, dtype=F64) * 20).requires_grad_()
    return PreferenceInputs(logp_chosen=lw, logp_rejected=ll,
                            logp_ref_chosen=lw.detach() + torch.randn(B, generator=g, dtype=F64),
                            logp_ref_rejected=ll.detach() + torch.randn(B, generator=g, dtype=F64),
                            reward_chosen=torch.randn(B, generator=g, dtype=F64),
                            reward_rejected=torch.randn(B, generator=g, dtype=F64))


def test_registered():
    entry = PREFERENCE_LOSSES.entry("copg")
    assert entry.fn is copg_loss and entry.params is CoPGParams


def test_by_hand():
    # β = 0.5; ρ(y) = −1 − (−3) = 2, ρ(y′) = −2 − (−2) = 0; r(y) = 1, r(y′) = 3
    # R(y) = 1 − 0.5·2 = 0, R(y′) = 3 − 0 = 3;  gap −3;  ℓ = 9/(2·0.5) = 9
    x = PreferenceInputs(**{k: torch.tensor([v], dtype=F64) for k, v in {
        "logp_chosen": -1.0, "logp_rejected": -2.0, "logp_ref_chosen": -3.0, "logp_ref_rejected": -2.0,
        "reward_chosen": 1.0, "reward_rejected": 3.0}.items()})
    out = copg_loss(x, CoPGParams(beta=0.5))
    assert out.loss.item() == pytest.approx(9.0, abs=1e-15)
    assert out.metrics["regularized_reward_gap"].item() == pytest.approx(-3.0, abs=1e-15)


def test_negative_gradient_is_the_copg_update():
    # −∂L/∂log π(y) = (R(y) − R(y′))/B,  −∂L/∂log π(y′) = −(R(y) − R(y′))/B
    x, beta = _pairs(1), 0.3
    gw, gl = torch.autograd.grad(copg_loss(x, CoPGParams(beta=beta)).loss, (x.logp_chosen, x.logp_rejected))
    R_w = x.reward_chosen - beta * (x.logp_chosen - x.logp_ref_chosen).detach()
    R_l = x.reward_rejected - beta * (x.logp_rejected - x.logp_ref_rejected).detach()
    B = R_w.numel()
    torch.testing.assert_close(-gw, (R_w - R_l) / B, rtol=0, atol=1e-15)
    torch.testing.assert_close(-gl, -(R_w - R_l) / B, rtol=0, atol=1e-15)


def test_pairs_are_unordered():
    x, p = _pairs(2), CoPGParams(beta=0.2)
    swapped = PreferenceInputs(logp_chosen=x.logp_rejected, logp_rejected=x.logp_chosen,
                               logp_ref_chosen=x.logp_ref_rejected, logp_ref_rejected=x.logp_ref_chosen,
                               reward_chosen=x.reward_rejected, reward_rejected=x.reward_chosen)
    torch.testing.assert_close(copg_loss(swapped, p).loss, copg_loss(x, p).loss, rtol=0, atol=1e-15)


def test_rewards_required():
    x = _pairs(3)
    with pytest.raises(ValueError, match="reward_chosen"):
        copg_loss(PreferenceInputs(logp_chosen=x.logp_chosen, logp_rejected=x.logp_rejected,
                                   logp_ref_chosen=x.logp_ref_chosen, logp_ref_rejected=x.logp_ref_rejected),
                  CoPGParams())
