"""TDPO1/TDPO2: hand values, zero KL is DPO, the stop-gradient, and token_kl against brute force."""

import math

import pytest
import torch
import torch.nn.functional as F

from alignrl.objectives.dpo import DPOParams, dpo_loss
from alignrl.objectives.preference_base import PreferenceInputs
from alignrl.objectives.tdpo import TDPO1Params, TDPO2Params, tdpo1_loss, tdpo2_loss, token_kl
from alignrl.registry import PREFERENCE_LOSSES

F64 = torch.float64


def _hand():
    # ρ_w = 1, ρ_l = 0; D(y_w) = 0.2 + 0.3 = 0.5 (third position padded with inf), D(y_l) = 1.5
    kl_w = torch.tensor([[0.2, 0.3, math.inf]], dtype=F64, requires_grad=True)
    kl_l = torch.tensor([[1.0, 0.5, 0.0]], dtype=F64, requires_grad=True)
    return PreferenceInputs(
        logp_chosen=torch.tensor([-1.0], dtype=F64), logp_rejected=torch.tensor([-3.0], dtype=F64),
        logp_ref_chosen=torch.tensor([-2.0], dtype=F64), logp_ref_rejected=torch.tensor([-3.0], dtype=F64),
        kl_chosen=kl_w, mask_chosen=torch.tensor([[True, True, False]]),
        kl_rejected=kl_l, mask_rejected=torch.tensor([[True, True, True]]),
    )


def _random(seed=0, B=6, T=7):
    g = torch.Generator().manual_seed(seed)
    lw = (-torch.rand(B, generator=g, dtype=F64) * 20).requires_grad_()
    ll = (-torch.rand(B, generator=g, dtype=F64) * 20).requires_grad_()
    mw, ml = torch.rand(B, T, generator=g) > 0.3, torch.rand(B, T, generator=g) > 0.3
    return PreferenceInputs(
        logp_chosen=lw, logp_rejected=ll,
        logp_ref_chosen=lw.detach() + torch.randn(B, generator=g, dtype=F64),
        logp_ref_rejected=ll.detach() + torch.randn(B, generator=g, dtype=F64),
        kl_chosen=torch.rand(B, T, generator=g, dtype=F64).requires_grad_(), mask_chosen=mw,
        kl_rejected=torch.rand(B, T, generator=g, dtype=F64).requires_grad_(), mask_rejected=ml,
    )


def test_registered():
    assert PREFERENCE_LOSSES.entry("tdpo1").fn is tdpo1_loss and PREFERENCE_LOSSES.entry("tdpo1").params is TDPO1Params
    assert PREFERENCE_LOSSES.entry("tdpo2").fn is tdpo2_loss and PREFERENCE_LOSSES.entry("tdpo2").params is TDPO2Params


def test_by_hand():
    x = _hand()
    # tdpo1: z = β·(1 − (1.5 − 0.5)) = 0 -> −log σ(0) = log 2
    out1 = tdpo1_loss(x, TDPO1Params(beta=2.0))
    assert out1.loss.item() == pytest.approx(math.log(2.0), abs=1e-15)
    assert out1.metrics["seq_kl_chosen"].item() == pytest.approx(0.5, abs=1e-15)
    assert out1.metrics["seq_kl_rejected"].item() == pytest.approx(1.5, abs=1e-15)
    # tdpo2, α = ½: z = 2·(1 − ½·(1.5 − 0.5)) = 1 -> −log σ(1) = 0.31326168751822286
    assert tdpo2_loss(x, TDPO2Params(beta=2.0, alpha=0.5)).loss.item() == pytest.approx(0.31326168751822286,
                                                                                        abs=1e-15)


def test_zero_kl_is_dpo():
    x = _random(1)
    z = PreferenceInputs(logp_chosen=x.logp_chosen, logp_rejected=x.logp_rejected, logp_ref_chosen=x.logp_ref_chosen,
                         logp_ref_rejected=x.logp_ref_rejected, kl_chosen=torch.zeros(6, 7, dtype=F64),
                         mask_chosen=x.mask_chosen, kl_rejected=torch.zeros(6, 7, dtype=F64),
                         mask_rejected=x.mask_rejected)
    d = dpo_loss(x, DPOParams(beta=0.3)).loss
    torch.testing.assert_close(tdpo1_loss(z, TDPO1Params(beta=0.3)).loss, d, rtol=0, atol=1e-15)
    torch.testing.assert_close(tdpo2_loss(z, TDPO2Params(beta=0.3)).loss, d, rtol=0, atol=1e-15)


def test_tdpo2_alpha_one_same_value_but_stop_gradient_on_chosen_kl():
    x, beta = _random(2), 0.4
    l1, l2 = tdpo1_loss(x, TDPO1Params(beta=beta)).loss, tdpo2_loss(x, TDPO2Params(beta=beta, alpha=1.0)).loss
    torch.testing.assert_close(l1, l2, rtol=0, atol=1e-15)
    g1w, g1l = torch.autograd.grad(l1, (x.kl_chosen, x.kl_rejected))
    g2w, g2l = torch.autograd.grad(l2, (x.kl_chosen, x.kl_rejected), allow_unused=True)
    assert g2w is None and g1w.abs().max().item() > 0.0  # sg: D(y_w) is not in TDPO2's graph
    torch.testing.assert_close(g1l, g2l, rtol=0, atol=1e-16)
    # analytic: ∂L/∂KL_l,t = (β/B)·σ(−z)·mask (tdpo1), both losses
    rho = (x.logp_chosen - x.logp_ref_chosen - x.logp_rejected + x.logp_ref_rejected).detach()
    d_w = (x.kl_chosen * x.mask_chosen).sum(-1).detach()
    d_l = (x.kl_rejected * x.mask_rejected).sum(-1).detach()
    z = beta * (rho - (d_l - d_w))
    torch.testing.assert_close(g1l, (beta / 6) * torch.sigmoid(-z)[:, None] * x.mask_rejected, rtol=0, atol=1e-16)


def test_missing_token_inputs_raise():
    x = PreferenceInputs(logp_chosen=torch.zeros(1), logp_rejected=torch.zeros(1), logp_ref_chosen=torch.zeros(1),
                         logp_ref_rejected=torch.zeros(1))
    with pytest.raises(ValueError, match="kl_chosen"):
        tdpo1_loss(x, TDPO1Params())


def test_token_kl_matches_brute_force_value_and_gradient():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 5, 11, generator=g, dtype=F64, requires_grad=True)
    logits_ref = torch.randn(3, 5, 11, generator=g, dtype=F64)
    kl = token_kl(logits, logits_ref, chunk_size=4)
    q = F.softmax(logits_ref, -1)
    brute = (q * (F.log_softmax(logits_ref, -1) - F.log_softmax(logits, -1))).sum(-1)  # KL(π_ref‖π_θ)
    torch.testing.assert_close(kl, brute, rtol=0, atol=1e-14)
    w = torch.randn(3, 5, generator=g, dtype=F64)
    (ga,) = torch.autograd.grad((kl * w).sum(), (logits,))
    (gb,) = torch.autograd.grad((brute * w).sum(), (logits,))
    torch.testing.assert_close(ga, gb, rtol=0, atol=1e-14)
