"""GSPO: sequence ratio = geometric mean of token ratios; equals GSPO-sequence in value and gradient."""

import math

import pytest
import torch

from alignrl.objectives.gspo import GSPOParams, gspo_loss
from alignrl.objectives.ppo import PPOParams, ppo_loss
from alignrl.ops import masked_mean
from alignrl.registry import POLICY_LOSSES

F64 = torch.float64


def _random(seed=0, B=6, T=8, scale=0.05):
    g = torch.Generator().manual_seed(seed)
    logp_old = -torch.rand(B, T, generator=g, dtype=F64) * 3
    logp = (logp_old + torch.randn(B, T, generator=g, dtype=F64) * scale).requires_grad_()
    mask = torch.rand(B, T, generator=g) > 0.25
    mask[:, 0] = True
    adv_seq = torch.randn(B, generator=g, dtype=F64)
    return logp, logp_old, adv_seq[:, None] * mask, adv_seq, mask


def test_registered():
    entry = POLICY_LOSSES.entry("gspo")
    assert entry.fn is gspo_loss and entry.params is GSPOParams


def test_sequence_ratio_is_geometric_mean_by_hand():
    # token ratios 2 and 8 -> s = (2·8)^(1/2) = 4; a masked third token (ratio 1000) is ignored
    logp_old = torch.zeros(1, 3, dtype=F64)
    logp = torch.tensor([[math.log(2.0), math.log(8.0), math.log(1000.0)]], dtype=F64)
    mask = torch.tensor([[True, True, False]])
    adv = torch.tensor([[1.0, 1.0, 0.0]], dtype=F64)
    out = gspo_loss(logp, logp_old, adv, mask, GSPOParams(clip_low=0.9, clip_high=5.0))
    assert out.metrics["seq_ratio_mean"].item() == pytest.approx(4.0, abs=1e-13)
    # unclipped (4 < 1 + 5): ℓ = −s·A = −4 on both tokens, sequence mean −4
    assert out.loss.item() == pytest.approx(-4.0, abs=1e-13)
    # clipped at 1 + 4e-4 with the paper's defaults
    out = gspo_loss(logp, logp_old, adv, mask, GSPOParams())
    assert out.loss.item() == pytest.approx(-(1 + 4e-4), abs=1e-13)
    assert out.metrics["clipfrac"].item() == 1.0


def _gspo_sequence_reference(logp, logp_old, adv_seq, mask, lo, hi):
    """Paper form: J = (1/G) Σ_i min(s_i·A_i, clip(s_i)·A_i), s_i = exp(mean_t log ratio), loss = −J."""
    s = masked_mean(logp - logp_old, mask, dim=-1).exp()
    return -torch.minimum(s * adv_seq, s.clamp(1 - lo, 1 + hi) * adv_seq).mean()


@pytest.mark.parametrize("agg", ["seq_mean_token_mean", "token_mean"])
def test_equals_sequence_level_gspo_in_value_and_gradient(agg):
    logp, logp_old, adv, adv_seq, mask = _random(1, B=12)
    lo, hi = 0.01, 0.015  # some sequences clipped, some not
    ours = gspo_loss(logp, logp_old, adv, mask, GSPOParams(clip_low=lo, clip_high=hi, loss_agg=agg)).loss
    (g_ours,) = torch.autograd.grad(ours, logp)
    if agg == "seq_mean_token_mean":
        ref = _gspo_sequence_reference(logp, logp_old, adv_seq, mask, lo, hi)
    else:  # token_mean weights sequence i by |y_i| / Σ|y|
        s = masked_mean(logp - logp_old, mask, dim=-1).exp()
        per_seq = -torch.minimum(s * adv_seq, s.clamp(1 - lo, 1 + hi) * adv_seq)
        ref = (per_seq * mask.sum(-1)).sum() / mask.sum()
    (g_ref,) = torch.autograd.grad(ref, logp)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-15)
    torch.testing.assert_close(g_ours, g_ref, rtol=0, atol=1e-15)
    s = masked_mean((logp - logp_old).detach(), mask, dim=-1).exp()
    clipped = ((adv_seq > 0) & (s > 1 + hi)) | ((adv_seq < 0) & (s < 1 - lo))
    assert clipped.any() and (~clipped).any()
    assert (g_ours[clipped] == 0).all()


def test_one_token_equals_token_level_ppo():
    logp, logp_old, adv, _, _ = _random(2, B=16, T=1, scale=0.3)
    mask = torch.ones(16, 1, dtype=torch.bool)
    for dual in (None, 2.0):
        g = gspo_loss(logp, logp_old, adv, mask, GSPOParams(clip_low=0.2, clip_high=0.25, dual_clip=dual))
        p = ppo_loss(logp, logp_old, adv, mask,
                     PPOParams(clip_low=0.2, clip_high=0.25, dual_clip=dual, loss_agg="seq_mean_token_mean"))
        torch.testing.assert_close(g.loss, p.loss, rtol=0, atol=1e-15)
        gg, gp = torch.autograd.grad(g.loss, logp)[0], torch.autograd.grad(p.loss, logp)[0]
        torch.testing.assert_close(gg, gp, rtol=0, atol=1e-15)
        assert g.metrics["clipfrac"] == p.metrics["clipfrac"]


def test_at_ratio_one_loss_is_minus_advantage():
    _, logp_old, adv, adv_seq, mask = _random(3)
    out = gspo_loss(logp_old.clone().requires_grad_(), logp_old, adv, mask, GSPOParams())
    torch.testing.assert_close(out.loss, -adv_seq.mean(), rtol=0, atol=1e-15)


def test_garbage_under_mask_is_ignored():
    logp, logp_old, adv, _, mask = _random(4)
    clean = gspo_loss(logp, logp_old, adv, mask, GSPOParams()).loss
    bad_logp = logp.detach().masked_fill(~mask, float("inf")).requires_grad_()
    dirty = gspo_loss(bad_logp, logp_old.masked_fill(~mask, float("-inf")), adv.masked_fill(~mask, float("nan")),
                      mask, GSPOParams())
    torch.testing.assert_close(dirty.loss, clean, rtol=0, atol=0)
    dirty.loss.backward()
    assert torch.isfinite(bad_logp.grad).all() and (bad_logp.grad[~mask] == 0).all()
