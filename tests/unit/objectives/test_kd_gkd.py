"""GKD: the loss is JSD(β) with temperature (the same per-token loss as ``jsd``); λ is the loop's data
knob and never changes the loss; hand value; validation and the student-data metric."""

import math

import pytest
import torch

from alignrl.objectives.distill_base import DistillInputs
from alignrl.objectives.gkd import GKDParams, gkd_loss
from alignrl.objectives.kd import JSDLossParams, jsd_loss
from alignrl.registry import DISTILL_LOSSES

F64 = torch.float64


def random_batch(seed, B=4, T=3, V=5):
    g = torch.Generator().manual_seed(seed)
    zs = 2 * torch.randn(B, T, V, generator=g, dtype=F64)
    zt = 2 * torch.randn(B, T, V, generator=g, dtype=F64)
    mask = torch.rand(B, T, generator=g) > 0.3
    mask[:, 0] = True
    return zs, zt, mask


def test_registered_and_validated():
    assert DISTILL_LOSSES.get("gkd") is gkd_loss and DISTILL_LOSSES.entry("gkd").params is GKDParams
    for bad in (dict(beta=-0.5), dict(beta=1.5), dict(lmbda=-0.1), dict(lmbda=1.1)):
        with pytest.raises(ValueError):
            GKDParams(**bad)


def test_hand_worked_jsd_half():
    # q_θ = (1/2, 1/2), p_T = (1/4, 3/4) (τ = 2 on z_T = [0, 2 ln 3]); M = (3/8, 5/8)
    # JSD(½) = ½·[1/4·ln(2/3) + 3/4·ln(6/5)] + ½·[1/2·ln(4/3) + 1/2·ln(4/5)] = 0.0338220755…
    zt = torch.tensor([[[0.0, 2 * math.log(3)]]], dtype=F64)
    one = torch.ones(1, 1, dtype=torch.bool)
    x = DistillInputs(logits=torch.zeros(1, 1, 2, dtype=F64), logits_teacher=zt, mask=one)
    want = (0.5 * (0.25 * math.log(2 / 3) + 0.75 * math.log(6 / 5))
            + 0.5 * (0.5 * math.log(4 / 3) + 0.5 * math.log(4 / 5)))
    assert gkd_loss(x, GKDParams(beta=0.5, temperature=2.0)).loss.item() == pytest.approx(want, abs=1e-15)


@pytest.mark.parametrize("beta", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("mode", ["token_mean", "seq_mean_token_mean"])
def test_is_the_jsd_loss_and_lambda_does_not_enter_the_loss(beta, mode):
    zs, zt, mask = random_batch(1)
    grads, losses = [], []
    for fn, p in ((jsd_loss, JSDLossParams(beta=beta, temperature=0.9, loss_agg=mode)),
                  (gkd_loss, GKDParams(beta=beta, temperature=0.9, loss_agg=mode, lmbda=0.0)),
                  (gkd_loss, GKDParams(beta=beta, temperature=0.9, loss_agg=mode, lmbda=1.0))):
        leaf = zs.clone().requires_grad_()
        out = fn(DistillInputs(logits=leaf, logits_teacher=zt, mask=mask), p)
        out.loss.backward()
        losses.append(out.loss.item())
        grads.append(leaf.grad)
    assert losses[0] == losses[1] == losses[2]
    assert torch.equal(grads[0], grads[1]) and torch.equal(grads[1], grads[2])


def test_student_data_fraction_metric():
    zs, zt, mask = random_batch(2)
    x = DistillInputs(logits=zs, logits_teacher=zt, mask=mask, from_student=torch.tensor([True, False, True, True]))
    out = gkd_loss(x, GKDParams())
    assert out.metrics["student_data_frac"].item() == 0.75 and set(out.metrics) == {"divergence", "student_data_frac"}
    assert set(gkd_loss(DistillInputs(logits=zs, logits_teacher=zt, mask=mask), GKDParams()).metrics) == {"divergence"}
