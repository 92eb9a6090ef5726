"""Hinge (SLiC): hand values, zero gradient beyond the margin, reference-free mode."""

import pytest
import torch

from alignrl.objectives.hinge import HingeParams, hinge_loss
from alignrl.objectives.preference_base import PreferenceInputs
from alignrl.registry import PREFERENCE_LOSSES

F64 = torch.float64


def _x():
    # pair 0: ρ_w = −1 − (−2) = 1, ρ_l = −3 − (−3) = 0 -> h = 1;  pair 1: ρ_w = 3, ρ_l = −1 -> h = 4
    lw = torch.tensor([-1.0, -1.0], dtype=F64, requires_grad=True)
    ll = torch.tensor([-3.0, -5.0], dtype=F64, requires_grad=True)
    return PreferenceInputs(logp_chosen=lw, logp_rejected=ll, logp_ref_chosen=torch.tensor([-2.0, -4.0], dtype=F64),
                            logp_ref_rejected=torch.tensor([-3.0, -4.0], dtype=F64))


def test_registered():
    entry = PREFERENCE_LOSSES.entry("hinge")
    assert entry.fn is hinge_loss and entry.params is HingeParams


def test_by_hand_and_gradient():
    x = _x()
    out = hinge_loss(x, HingeParams(beta=0.5))
    # max(0, 1 − 0.5·1) = 0.5;  max(0, 1 − 0.5·4) = 0;  mean 0.25
    assert out.loss.item() == pytest.approx(0.25, abs=1e-15)
    gw, gl = torch.autograd.grad(out.loss, (x.logp_chosen, x.logp_rejected))
    # active pair 0: −β/B = −0.25 on y_w, +0.25 on y_l; pair 1 is past the margin: 0
    torch.testing.assert_close(gw, torch.tensor([-0.25, 0.0], dtype=F64), rtol=0, atol=0)
    torch.testing.assert_close(gl, torch.tensor([0.25, 0.0], dtype=F64), rtol=0, atol=0)


def test_reference_free_by_hand():
    x = _x()
    # raw margins: −1 − (−3) = 2 and −1 − (−5) = 4;  β = 0.4: max(0, 1 − 0.8) = 0.2, max(0, 1 − 1.6) = 0 -> 0.1
    out = hinge_loss(x, HingeParams(beta=0.4, reference_free=True))
    assert out.loss.item() == pytest.approx(0.1, abs=1e-15)
    no_ref = PreferenceInputs(logp_chosen=x.logp_chosen, logp_rejected=x.logp_rejected)
    assert hinge_loss(no_ref, HingeParams(beta=0.4, reference_free=True)).loss.item() == pytest.approx(0.1, abs=1e-15)
