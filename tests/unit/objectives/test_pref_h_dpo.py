"""H-DPO: α = 1 is DPO, hand value, analytic gradient."""

import pytest
import torch

from alignrl.objectives.dpo import DPOParams, dpo_loss
from alignrl.objectives.h_dpo import HDPOParams, h_dpo_loss
from alignrl.objectives.preference_base import PreferenceInputs
from alignrl.registry import PREFERENCE_LOSSES

F64 = torch.float64


def _pairs(seed=0, B=8):
    g = torch.Generator().manual_seed(seed)
    lw = (-torch.rand(B, generator=g, dtype=F64) * 20).requires_grad_()
    ll = (-torch.rand(B, generator=g, dtype=F64) * 20).requires_grad_()
    rw = lw.detach() + torch.randn(B, generator=g, dtype=F64) * 2
    rl = ll.detach() + torch.randn(B, generator=g, dtype=F64) * 2
    return PreferenceInputs(logp_chosen=lw, logp_rejected=ll, logp_ref_chosen=rw, logp_ref_rejected=rl)


def test_registered():
    entry = PREFERENCE_LOSSES.entry("h_dpo")
    assert entry.fn is h_dpo_loss and entry.params is HDPOParams


def test_alpha_one_is_dpo():
    x = _pairs(1)
    torch.testing.assert_close(h_dpo_loss(x, HDPOParams(beta=0.3, alpha=1.0)).loss,
                               dpo_loss(x, DPOParams(beta=0.3)).loss, rtol=0, atol=1e-15)


def test_by_hand():
    # α = ½, β = 1: chosen α·(−2) − (−1) = 0;  rejected α·(−4) − (−1) = −1;  z = 1 -> −log σ(1) = 0.31326168751822286
    x = PreferenceInputs(logp_chosen=torch.tensor([-2.0], dtype=F64), logp_rejected=torch.tensor([-4.0], dtype=F64),
                         logp_ref_chosen=torch.tensor([-1.0], dtype=F64),
                         logp_ref_rejected=torch.tensor([-1.0], dtype=F64))
    out = h_dpo_loss(x, HDPOParams(beta=1.0, alpha=0.5))
    assert out.loss.item() == pytest.approx(0.31326168751822286, abs=1e-15)
    assert out.metrics["hdpo_margin"].item() == pytest.approx(1.0, abs=1e-15)
    # the DPO rewards β·ρ: chosen −2 − (−1) = −1, rejected −3; margin 2
    assert out.metrics["reward_margin"].item() == pytest.approx(2.0, abs=1e-15)


def test_gradient_matches_docstring():
    # ∂L/∂log π(y_w) = −∂L/∂log π(y_l) = −(α·β/B)·σ(−z)
    x, beta, alpha = _pairs(2), 0.4, 0.7
    gw, gl = torch.autograd.grad(h_dpo_loss(x, HDPOParams(beta=beta, alpha=alpha)).loss,
                                 (x.logp_chosen, x.logp_rejected))
    z = beta * ((alpha * x.logp_chosen - x.logp_ref_chosen) - (alpha * x.logp_rejected - x.logp_ref_rejected)).detach()
    analytic = -(alpha * beta / z.numel()) * torch.sigmoid(-z)
    torch.testing.assert_close(gw, analytic, rtol=0, atol=1e-16)
    torch.testing.assert_close(gl, -analytic, rtol=0, atol=1e-16)
