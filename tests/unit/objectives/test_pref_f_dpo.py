"""f-DPO: reverse KL is DPO, hand values for forward KL / JS / α, α limits, parameter checks."""

import math

import pytest
import torch

from alignrl.objectives.dpo import DPOParams, dpo_loss
from alignrl.objectives.f_dpo import FDPOParams, f_dpo_loss
from alignrl.objectives.preference_base import PreferenceInputs
from alignrl.registry import PREFERENCE_LOSSES

F64 = torch.float64


def _pairs(seed=0, B=8, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    lw = (-torch.rand(B, generator=g, dtype=F64) * 20).requires_grad_()
    ll = (-torch.rand(B, generator=g, dtype=F64) * 20).requires_grad_()
    rw = lw.detach() + torch.randn(B, generator=g, dtype=F64) * scale
    rl = ll.detach() + torch.randn(B, generator=g, dtype=F64) * scale
    return PreferenceInputs(logp_chosen=lw, logp_rejected=ll, logp_ref_chosen=rw, logp_ref_rejected=rl)


def _rho(rho_w, rho_l):
    return PreferenceInputs(logp_chosen=torch.tensor([rho_w], dtype=F64), logp_rejected=torch.tensor([rho_l], dtype=F64),
                            logp_ref_chosen=torch.zeros(1, dtype=F64), logp_ref_rejected=torch.zeros(1, dtype=F64))


def test_registered():
    entry = PREFERENCE_LOSSES.entry("f_dpo")
    assert entry.fn is f_dpo_loss and entry.params is FDPOParams


def test_reverse_kl_is_dpo_value_and_gradient():
    x = _pairs(1)
    out_f = f_dpo_loss(x, FDPOParams(beta=0.3))
    out_d = dpo_loss(x, DPOParams(beta=0.3))
    torch.testing.assert_close(out_f.loss, out_d.loss, rtol=0, atol=1e-15)
    gf = torch.autograd.grad(out_f.loss, (x.logp_chosen, x.logp_rejected))
    gd = torch.autograd.grad(out_d.loss, (x.logp_chosen, x.logp_rejected))
    for a, b in zip(gf, gd):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-16)


def test_reverse_kl_beyond_clamp_needs_inf_clamp():
    x = _pairs(2, scale=40.0)  # |ρ| up to ~100
    d = dpo_loss(x, DPOParams(beta=0.1)).loss
    torch.testing.assert_close(f_dpo_loss(x, FDPOParams(beta=0.1, log_ratio_clamp=math.inf)).loss, d, rtol=0,
                               atol=1e-14)
    assert (f_dpo_loss(x, FDPOParams(beta=0.1)).loss - d).abs().item() > 1e-3  # default clamp 20 bites


def test_forward_kl_by_hand():
    # f′(u) = −1/u: u_w = e⁰ = 1 -> −1;  u_l = e^{log 2} = 2 -> −0.5;  margin −0.5;  β = 1
    # −log σ(−0.5) = log(1 + e^{0.5}) = 0.9740769841801067
    out = f_dpo_loss(_rho(0.0, math.log(2.0)), FDPOParams(beta=1.0, divergence="forward_kl"))
    assert out.loss.item() == pytest.approx(0.9740769841801067, abs=1e-15)
    assert out.metrics["score_margin"].item() == pytest.approx(-0.5, abs=1e-15)


def test_js_by_hand():
    # f′(u) = ½·log(2u/(1+u)): u_w = 3 -> ½·log 1.5 = 0.2027325540540822;  u_l = 1 -> 0
    # β = 2: z = log 1.5;  −log σ(log 1.5) = log(1 + 1/1.5) = log(5/3) = 0.5108256237659907
    out = f_dpo_loss(_rho(math.log(3.0), 0.0), FDPOParams(beta=2.0, divergence="js"))
    assert out.metrics["score_margin"].item() == pytest.approx(0.2027325540540822, abs=1e-15)
    assert out.loss.item() == pytest.approx(0.5108256237659907, abs=1e-15)


def test_alpha_by_hand():
    # α = ½: f′(u) = (u^{−½} − 1)/(−½) = 2·(1 − u^{−½}): u_w = 4 -> 2·(1 − ½) = 1;  u_l = 1 -> 0
    # β = 1: −log σ(1) = 0.31326168751822286
    out = f_dpo_loss(_rho(math.log(4.0), 0.0), FDPOParams(beta=1.0, divergence="alpha", alpha=0.5))
    assert out.loss.item() == pytest.approx(0.31326168751822286, abs=1e-15)


def test_alpha_limits_are_reverse_and_forward_kl():
    x = _pairs(3)
    for alpha, div in ((1.0, "reverse_kl"), (0.0, "forward_kl")):
        torch.testing.assert_close(f_dpo_loss(x, FDPOParams(beta=0.2, divergence="alpha", alpha=alpha)).loss,
                                   f_dpo_loss(x, FDPOParams(beta=0.2, divergence=div)).loss, rtol=0, atol=1e-14)


def test_param_checks():
    with pytest.raises(ValueError, match="unknown divergence"):
        FDPOParams(divergence="reverse_kll")
    with pytest.raises(ValueError, match="no sampled form"):
        FDPOParams(divergence="akl")
    with pytest.raises(ValueError, match="takes no alpha"):
        FDPOParams(divergence="js", alpha=0.3)
