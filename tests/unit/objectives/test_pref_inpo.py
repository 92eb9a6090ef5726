"""INPO: ητ = 1 is IPO with τ = 1/η, ητ = 0 ignores π_ref, hand value, analytic gradient."""

import pytest
import torch

from alignrl.objectives.inpo import INPOParams, inpo_loss
from alignrl.objectives.ipo import IPOParams, ipo_loss
from alignrl.objectives.preference_base import PreferenceInputs
from alignrl.registry import PREFERENCE_LOSSES

F64 = torch.float64


def _pairs(seed=0, B=8):
    g = torch.Generator().manual_seed(seed)
    lw = (-torch.rand(B, generator=g, dtype=F64) * 20).requires_grad_()
    ll = (-torch.rand(B, generator=g, dtype=F64) * 20).requires_grad_()
    n = {k: torch.randn(B, generator=g, dtype=F64) * 3 for k in ("rw", "rl", "tw", "tl")}
    return PreferenceInputs(logp_chosen=lw, logp_rejected=ll, logp_ref_chosen=lw.detach() + n["rw"],
                            logp_ref_rejected=ll.detach() + n["rl"], logp_prev_chosen=lw.detach() + n["tw"],
                            logp_prev_rejected=ll.detach() + n["tl"])


def _replace(x, **kw):
    names = ("logp_chosen", "logp_rejected", "logp_ref_chosen", "logp_ref_rejected", "logp_prev_chosen",
             "logp_prev_rejected")
    return PreferenceInputs(**{n: kw.get(n, getattr(x, n)) for n in names})


def test_registered():
    entry = PREFERENCE_LOSSES.entry("inpo")
    assert entry.fn is inpo_loss and entry.params is INPOParams


def test_by_hand():
    # η = 4, τ = 0.125 -> ητ = ½, target η/2 = 2
    # Δlog π_θ = −1 − (−5) = 4;  Δlog π_ref = −2 − (−4) = 2;  Δlog π_t = −3 − (−3) = 0
    # h = 4 − ½·2 − ½·0 = 3;  (3 − 2)² = 1
    x = PreferenceInputs(**{k: torch.tensor([v], dtype=F64) for k, v in {
        "logp_chosen": -1.0, "logp_rejected": -5.0, "logp_ref_chosen": -2.0, "logp_ref_rejected": -4.0,
        "logp_prev_chosen": -3.0, "logp_prev_rejected": -3.0}.items()})
    assert inpo_loss(x, INPOParams(eta=4.0, tau=0.125)).loss.item() == pytest.approx(1.0, abs=1e-15)


def test_eta_tau_one_is_ipo_and_ignores_previous_iterate():
    x, eta = _pairs(1), 8.0
    out = inpo_loss(x, INPOParams(eta=eta, tau=1.0 / eta)).loss
    torch.testing.assert_close(out, ipo_loss(x, IPOParams(beta=1.0 / eta)).loss, rtol=0, atol=1e-13)
    moved = _replace(x, logp_prev_chosen=x.logp_prev_chosen + 5.0)
    torch.testing.assert_close(inpo_loss(moved, INPOParams(eta=eta, tau=1.0 / eta)).loss, out, rtol=0, atol=1e-13)


def test_eta_tau_zero_ignores_reference():
    x = _pairs(2)
    moved = _replace(x, logp_ref_chosen=x.logp_ref_chosen - 4.0)
    p = INPOParams(eta=3.0, tau=0.0)
    torch.testing.assert_close(inpo_loss(moved, p).loss, inpo_loss(x, p).loss, rtol=0, atol=0)


def test_gradient_matches_docstring():
    x, p = _pairs(3), INPOParams(eta=6.0, tau=0.1)
    gw, gl = torch.autograd.grad(inpo_loss(x, p).loss, (x.logp_chosen, x.logp_rejected))
    mix = p.eta * p.tau
    h = ((x.logp_chosen - x.logp_rejected) - mix * (x.logp_ref_chosen - x.logp_ref_rejected)
         - (1 - mix) * (x.logp_prev_chosen - x.logp_prev_rejected)).detach()
    analytic = (2.0 / h.numel()) * (h - p.eta / 2)
    torch.testing.assert_close(gw, analytic, rtol=0, atol=1e-14)
    torch.testing.assert_close(gl, -analytic, rtol=0, atol=1e-14)


def test_param_checks():
    with pytest.raises(ValueError, match="eta·tau"):
        INPOParams(eta=10.0, tau=0.2)
    with pytest.raises(ValueError, match="logp_prev_chosen"):
        inpo_loss(PreferenceInputs(logp_chosen=torch.zeros(1), logp_rejected=torch.zeros(1),
                                   logp_ref_chosen=torch.zeros(1), logp_ref_rejected=torch.zeros(1)), INPOParams())
