"""Vanilla policy gradient −A·logp."""

import pytest
import torch

from alignrl.objectives.ppo import PPOParams, ppo_loss
from alignrl.objectives.reinforce import ReinforceParams, reinforce_loss
from alignrl.registry import POLICY_LOSSES

F64 = torch.float64


def test_registered():
    entry = POLICY_LOSSES.entry("reinforce")
    assert entry.fn is reinforce_loss and entry.params is ReinforceParams


def test_by_hand():
    # logp = [ln ½, ln ¼], A = [2, −1]: ℓ = [−2·ln ½, 1·ln ¼] = [2 ln 2, −2 ln 2]; token mean 0
    # gradient: −A/N = [−1, 0.5]
    logp = torch.tensor([[-0.6931471805599453, -1.3862943611198906]], dtype=F64, requires_grad=True)
    adv = torch.tensor([[2.0, -1.0]], dtype=F64)
    out = reinforce_loss(logp, logp.detach(), adv, torch.ones(1, 2, dtype=torch.bool), ReinforceParams())
    assert out.loss.item() == pytest.approx(0.0, abs=1e-15)
    out.loss.backward()
    assert logp.grad.tolist() == [[-1.0, 0.5]]


def test_on_policy_gradient_equals_ppo_gradient():
    # at logp = logp_old, ∇ PPO = −A·s·∇logp/N with s = 1, i.e. the REINFORCE gradient
    torch.manual_seed(0)
    logp_old = -torch.rand(4, 5, dtype=F64)
    adv = torch.randn(4, 5, dtype=F64)
    mask = torch.rand(4, 5) > 0.3
    for agg in ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum"):
        a = logp_old.clone().requires_grad_()
        b = logp_old.clone().requires_grad_()
        reinforce_loss(a, logp_old, adv, mask, ReinforceParams(loss_agg=agg)).loss.backward()
        ppo_loss(b, logp_old, adv, mask, PPOParams(loss_agg=agg)).loss.backward()
        torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=1e-15)


def test_masked_garbage_ignored_and_metrics():
    logp = torch.tensor([[-1.0, float("-inf")]], dtype=F64, requires_grad=True)
    mask = torch.tensor([[True, False]])
    out = reinforce_loss(logp, torch.tensor([[-1.0, 0.0]], dtype=F64), torch.tensor([[3.0, float("nan")]], dtype=F64),
                         mask, ReinforceParams())
    assert out.loss.item() == pytest.approx(3.0, abs=1e-15)
    out.loss.backward()
    assert logp.grad.tolist() == [[-3.0, 0.0]]
    assert out.metrics["approx_kl"].item() == 0.0 and not out.metrics["approx_kl"].requires_grad
