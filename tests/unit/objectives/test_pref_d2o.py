"""D²O: K = 1 and α = β is DPO with the sample as positive; hand value; sample order; gradient split."""

import pytest
import torch

from alignrl.objectives.d2o import D2OParams, d2o_loss
from alignrl.objectives.dpo import DPOParams, dpo_loss
from alignrl.objectives.preference_base import PreferenceInputs
from alignrl.registry import PREFERENCE_LOSSES

F64 = torch.float64


def _random(seed=0, B=6, K=4):
    g = torch.Generator().manual_seed(seed)
    ls = (-torch.rand(B, K, generator=g, dtype=F64) * 20).requires_grad_()
    ll = (-torch.rand(B, generator=g, dtype=F64) * 20).requires_grad_()
    return PreferenceInputs(logp_samples=ls, logp_ref_samples=ls.detach() + torch.randn(B, K, generator=g, dtype=F64),
                            logp_rejected=ll, logp_ref_rejected=ll.detach() + torch.randn(B, generator=g, dtype=F64))


def test_registered():
    entry = PREFERENCE_LOSSES.entry("d2o")
    assert entry.fn is d2o_loss and entry.params is D2OParams


def test_by_hand():
    # K = 2: ρ(y_1) = −1 − (−2) = 1, ρ(y_2) = −3 − (−6) = 3 -> mean 2;  ρ(y_l) = −5 − (−4) = −1
    # β = 0.5, α = 1: z = 0.5·2 − 1·(−1) = 2 -> −log σ(2) = log(1 + e⁻²) = 0.12692801104297263
    x = PreferenceInputs(logp_samples=torch.tensor([[-1.0, -3.0]], dtype=F64),
                         logp_ref_samples=torch.tensor([[-2.0, -6.0]], dtype=F64),
                         logp_rejected=torch.tensor([-5.0], dtype=F64), logp_ref_rejected=torch.tensor([-4.0], dtype=F64))
    out = d2o_loss(x, D2OParams(beta=0.5, alpha=1.0))
    assert out.loss.item() == pytest.approx(0.12692801104297263, abs=1e-15)
    assert out.metrics["reward_chosen"].item() == pytest.approx(1.0, abs=1e-15)  # β·mean ρ(y_i) = 0.5·2


def test_single_sample_with_alpha_equal_beta_is_dpo():
    x = _random(1, K=1)
    as_dpo = PreferenceInputs(logp_chosen=x.logp_samples[:, 0], logp_ref_chosen=x.logp_ref_samples[:, 0],
                              logp_rejected=x.logp_rejected, logp_ref_rejected=x.logp_ref_rejected)
    torch.testing.assert_close(d2o_loss(x, D2OParams(beta=0.3, alpha=0.3)).loss,
                               dpo_loss(as_dpo, DPOParams(beta=0.3)).loss, rtol=0, atol=1e-15)


def test_sample_order_does_not_matter_and_gradient_splits_beta_over_k():
    x, p = _random(2), D2OParams(beta=0.4, alpha=0.2)
    perm = torch.tensor([2, 0, 3, 1])
    xp = PreferenceInputs(logp_samples=x.logp_samples[:, perm], logp_ref_samples=x.logp_ref_samples[:, perm],
                          logp_rejected=x.logp_rejected, logp_ref_rejected=x.logp_ref_rejected)
    torch.testing.assert_close(d2o_loss(xp, p).loss, d2o_loss(x, p).loss, rtol=0, atol=1e-15)
    gs, gl = torch.autograd.grad(d2o_loss(x, p).loss, (x.logp_samples, x.logp_rejected))
    rho_s = (x.logp_samples - x.logp_ref_samples).detach().mean(-1)
    z = p.beta * rho_s - p.alpha * (x.logp_rejected - x.logp_ref_rejected).detach()
    B, K = x.logp_samples.shape
    torch.testing.assert_close(gs, (-(p.beta / (B * K)) * torch.sigmoid(-z))[:, None].expand(B, K), rtol=0, atol=1e-16)
    torch.testing.assert_close(gl, (p.alpha / B) * torch.sigmoid(-z), rtol=0, atol=1e-16)
