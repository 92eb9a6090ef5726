"""SimPO: reference-free (ignores ref inputs), hand values, label smoothing, analytic gradient."""

import pytest
import torch

from alignrl.objectives.preference_base import PreferenceInputs
from alignrl.objectives.simpo import SimPOParams, simpo_loss
from alignrl.registry import PREFERENCE_LOSSES

F64 = torch.float64


def _pairs(seed=0, B=8, refs=True):
    g = torch.Generator().manual_seed(seed)
    lw = (-torch.rand(B, generator=g, dtype=F64) * 20).requires_grad_()
    ll = (-torch.rand(B, generator=g, dtype=F64) * 20).requires_grad_()
    lens = torch.randint(1, 30, (2, B), generator=g)
    ref = {"logp_ref_chosen": torch.randn(B, generator=g, dtype=F64) * 9,
           "logp_ref_rejected": torch.randn(B, generator=g, dtype=F64) * 9} if refs else {}
    return PreferenceInputs(logp_chosen=lw, logp_rejected=ll, len_chosen=lens[0], len_rejected=lens[1], **ref)


def test_registered():
    entry = PREFERENCE_LOSSES.entry("simpo")
    assert entry.fn is simpo_loss and entry.params is SimPOParams


def test_by_hand():
    # β = 2, γ = 0.5: r_w = 2·(−4/4) = −2;  r_l = 2·(−9/3) = −6;  z = −2 + 6 − 0.5 = 3.5
    # −log σ(3.5) = log(1 + e^{−3.5}) = 0.029750418272620566;  with ε = 0.1: + ε·z = 0.37975041827262057
    x = PreferenceInputs(logp_chosen=torch.tensor([-4.0], dtype=F64), logp_rejected=torch.tensor([-9.0], dtype=F64),
                         len_chosen=torch.tensor([4]), len_rejected=torch.tensor([3]))
    out = simpo_loss(x, SimPOParams(beta=2.0, gamma=0.5))
    assert out.loss.item() == pytest.approx(0.029750418272620566, abs=1e-15)
    assert out.metrics["reward_chosen"].item() == pytest.approx(-2.0, abs=1e-15)
    assert out.metrics["reward_rejected"].item() == pytest.approx(-6.0, abs=1e-15)
    smoothed = simpo_loss(x, SimPOParams(beta=2.0, gamma=0.5, label_smoothing=0.1)).loss.item()
    assert smoothed == pytest.approx(0.37975041827262057, abs=1e-15)


def test_reference_free():
    with_ref, without = _pairs(1), _pairs(1, refs=False)
    other_ref = PreferenceInputs(logp_chosen=with_ref.logp_chosen, logp_rejected=with_ref.logp_rejected,
                                 len_chosen=with_ref.len_chosen, len_rejected=with_ref.len_rejected,
                                 logp_ref_chosen=with_ref.logp_ref_chosen * -3.0 + 1.0,
                                 logp_ref_rejected=with_ref.logp_ref_rejected + 7.0)
    p = SimPOParams()
    base = simpo_loss(without, p)
    for x in (with_ref, other_ref):
        out = simpo_loss(x, p)
        torch.testing.assert_close(out.loss, base.loss, rtol=0, atol=0)
        for k in base.metrics:
            torch.testing.assert_close(out.metrics[k], base.metrics[k], rtol=0, atol=0)


def test_gradient_matches_docstring():
    # ∂L/∂log π(y_w) = −(β/(B·|y_w|))·σ(−z), ∂L/∂log π(y_l) = +(β/(B·|y_l|))·σ(−z)
    x, beta, gamma = _pairs(2), 2.5, 0.7
    gw, gl = torch.autograd.grad(simpo_loss(x, SimPOParams(beta=beta, gamma=gamma)).loss,
                                 (x.logp_chosen, x.logp_rejected))
    lw, ll = x.logp_chosen.detach(), x.logp_rejected.detach()
    nw, nl = x.len_chosen.to(F64), x.len_rejected.to(F64)
    z = beta * lw / nw - beta * ll / nl - gamma
    B = z.numel()
    torch.testing.assert_close(gw, -(beta / (B * nw)) * torch.sigmoid(-z), rtol=0, atol=1e-16)
    torch.testing.assert_close(gl, (beta / (B * nl)) * torch.sigmoid(-z), rtol=0, atol=1e-16)


def test_lengths_required():
    with pytest.raises(ValueError, match="len_chosen"):
        simpo_loss(PreferenceInputs(logp_chosen=torch.zeros(1), logp_rejected=torch.zeros(1)), SimPOParams())
