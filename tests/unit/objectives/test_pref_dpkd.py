"""DPKD: DPO with the teacher's log-probs as the reference; reads the teacher fields only."""

import pytest
import torch

from alignrl.objectives.dpkd import DPKDParams, dpkd_loss
from alignrl.objectives.dpo import DPOParams, dpo_loss
from alignrl.objectives.preference_base import PreferenceInputs
from alignrl.registry import PREFERENCE_LOSSES

F64 = torch.float64


def test_registered():
    entry = PREFERENCE_LOSSES.entry("dpkd")
    assert entry.fn is dpkd_loss and entry.params is DPKDParams


def test_by_hand():
    # student on teacher output −2, teacher −1 -> ρ_T = −1; student on own output −3, teacher −5 -> ρ_S = 2
    # β = 1: z = −1 − 2 = −3 -> −log σ(−3) = log(1 + e³) = 3.048587351573742
    x = PreferenceInputs(logp_chosen=torch.tensor([-2.0], dtype=F64), logp_rejected=torch.tensor([-3.0], dtype=F64),
                         logp_teacher_chosen=torch.tensor([-1.0], dtype=F64),
                         logp_teacher_rejected=torch.tensor([-5.0], dtype=F64))
    out = dpkd_loss(x, DPKDParams(beta=1.0))
    assert out.loss.item() == pytest.approx(3.048587351573742, abs=1e-15)
    assert out.metrics["reward_accuracy"].item() == 0.0


def test_is_dpo_with_teacher_as_reference_and_ignores_ref_fields():
    g = torch.Generator().manual_seed(0)
    lw, ll, tw, tl = (-torch.rand(8, generator=g, dtype=F64) * 20 for _ in range(4))
    lw.requires_grad_()
    x = PreferenceInputs(logp_chosen=lw, logp_rejected=ll, logp_teacher_chosen=tw, logp_teacher_rejected=tl,
                         logp_ref_chosen=torch.zeros(8, dtype=F64), logp_ref_rejected=torch.ones(8, dtype=F64))
    as_dpo = PreferenceInputs(logp_chosen=lw, logp_rejected=ll, logp_ref_chosen=tw, logp_ref_rejected=tl)
    a, b = dpkd_loss(x, DPKDParams(beta=0.2)), dpo_loss(as_dpo, DPOParams(beta=0.2))
    torch.testing.assert_close(a.loss, b.loss, rtol=0, atol=0)
    torch.testing.assert_close(torch.autograd.grad(a.loss, lw)[0], torch.autograd.grad(b.loss, lw)[0], rtol=0, atol=0)
    with pytest.raises(ValueError, match="logp_teacher_chosen"):
        dpkd_loss(as_dpo, DPKDParams())
