"""PPO clipped surrogate: hand values, clip/dual-clip gradients by autograd, aggregation, DP sharding."""

import dataclasses
import math

import pytest
import torch

from alignrl.objectives.ppo import PPOParams, ppo_loss
from alignrl.ops import aggregate
from alignrl.registry import POLICY_LOSSES

F64 = torch.float64
METRICS = {"approx_kl", "ratio_mean", "ratio_min", "ratio_max", "clipfrac", "clipfrac_low", "clipfrac_high",
           "dual_clipfrac"}


def _random(seed=0, B=4, T=6):
    g = torch.Generator().manual_seed(seed)
    logp_old = -torch.rand(B, T, generator=g, dtype=F64) * 3
    logp = (logp_old + torch.randn(B, T, generator=g, dtype=F64) * 0.4).requires_grad_()
    adv = torch.randn(B, T, generator=g, dtype=F64)
    mask = torch.rand(B, T, generator=g) > 0.25
    return logp, logp_old, adv, mask


def test_registered_and_params_frozen_and_checked():
    entry = POLICY_LOSSES.entry("ppo")
    assert entry.fn is ppo_loss and entry.params is PPOParams
    with pytest.raises(dataclasses.FrozenInstanceError):
        PPOParams().clip_low = 0.1
    for bad in (dict(clip_low=1.0), dict(clip_high=-0.1), dict(dual_clip=1.0), dict(loss_agg="sum")):
        with pytest.raises(ValueError):
            PPOParams(**bad)


def test_by_hand_with_asymmetric_clip():
    # ε_low = 0.2, ε_high = 0.28
    # t0: s = 1.5, A = +1: min(1.5, 1.28)·1 = 1.28   -> ℓ = −1.28 (clipped high)
    # t1: s = 0.5, A = −1: min(−0.5, −0.8) = −0.8     -> ℓ = +0.8  (clipped low)
    # t2: s = 1.1, A = −1: min(−1.1, −1.1) = −1.1     -> ℓ = +1.1
    # t3: s = 0.7, A = +2: min(1.4, 1.6) = 1.4        -> ℓ = −1.4  (pessimistic: unclipped)
    # t4: s = 1.25, A = +1: inside [0.8, 1.28]        -> ℓ = −1.25
    # token mean: (−1.28 + 0.8 + 1.1 − 1.4 − 1.25)/5 = −2.03/5 = −0.406; clipfrac 2/5
    ratio = torch.tensor([[1.5, 0.5, 1.1, 0.7, 1.25]], dtype=F64)
    adv = torch.tensor([[1.0, -1.0, -1.0, 2.0, 1.0]], dtype=F64)
    logp_old = torch.full_like(ratio, -1.0)
    out = ppo_loss(logp_old + ratio.log(), logp_old, adv, torch.ones_like(ratio, dtype=torch.bool),
                   PPOParams(clip_low=0.2, clip_high=0.28))
    assert out.loss.item() == pytest.approx(-0.406, abs=1e-14)
    assert out.metrics["clipfrac"].item() == pytest.approx(0.4, abs=1e-15)
    assert out.metrics["clipfrac_low"].item() == pytest.approx(0.2, abs=1e-15)
    assert out.metrics["clipfrac_high"].item() == pytest.approx(0.2, abs=1e-15)
    assert out.metrics["ratio_max"].item() == pytest.approx(1.5, abs=1e-14)
    assert out.metrics["ratio_min"].item() == pytest.approx(0.5, abs=1e-14)
    # approx_kl = mean(s − 1 − log s)
    k3 = sum(s - 1 - math.log(s) for s in [1.5, 0.5, 1.1, 0.7, 1.25]) / 5
    assert out.metrics["approx_kl"].item() == pytest.approx(k3, abs=1e-14)
    assert set(out.metrics) == METRICS and all(not v.requires_grad for v in out.metrics.values())


def test_at_ratio_one_loss_is_minus_advantage_and_gradient_is_minus_a_over_n():
    _, logp_old, adv, mask = _random(1)
    logp = logp_old.clone().requires_grad_()
    out = ppo_loss(logp, logp_old, adv, mask, PPOParams())
    torch.testing.assert_close(out.loss, aggregate(-adv, mask, "token_mean"), rtol=0, atol=1e-15)
    out.loss.backward()
    torch.testing.assert_close(logp.grad, -adv * mask / mask.sum(), rtol=0, atol=1e-15)
    assert out.metrics["approx_kl"].item() == 0.0 and out.metrics["clipfrac"].item() == 0.0


def test_gradient_is_zero_exactly_where_clipped():
    logp, logp_old, adv, mask = _random(2, B=8, T=16)
    p = PPOParams(clip_low=0.1, clip_high=0.15)
    ppo_loss(logp, logp_old, adv, mask, p).loss.backward()
    ratio = (logp - logp_old).detach().exp()
    clipped = ((adv > 0) & (ratio > 1 + p.clip_high)) | ((adv < 0) & (ratio < 1 - p.clip_low))
    assert clipped[mask].any() and (~clipped)[mask].any()
    assert (logp.grad[clipped] == 0).all()
    assert (logp.grad[~mask] == 0).all()
    # unclipped tokens: ∂/∂logp (−A·s)/N = −A·s/N
    live = mask & ~clipped
    torch.testing.assert_close(logp.grad[live], (-adv * ratio / mask.sum())[live], rtol=0, atol=1e-15)


def test_dual_clip_bounds_negative_advantage_loss():
    # A = −2, s = 5, c = 3: plain PPO gives −min(5·(−2), 1.2·(−2)) = 10; dual-clip caps it at −c·A = 6
    logp_old = torch.zeros(1, 2, dtype=F64)
    logp = torch.tensor([[math.log(5.0), math.log(2.0)]], dtype=F64, requires_grad=True)
    adv = torch.tensor([[-2.0, -2.0]], dtype=F64)
    mask = torch.ones(1, 2, dtype=torch.bool)
    plain = ppo_loss(logp, logp_old, adv, mask, PPOParams(loss_agg="seq_mean_token_sum"))
    assert plain.loss.item() == pytest.approx(10.0 + 4.0, abs=1e-13)  # t1: s = 2 < c: −min(−4, −2.4) = 4
    dual = ppo_loss(logp, logp_old, adv, mask, PPOParams(dual_clip=3.0, loss_agg="seq_mean_token_sum"))
    assert dual.loss.item() == pytest.approx(6.0 + 4.0, abs=1e-13)
    assert dual.metrics["dual_clipfrac"].item() == 0.5
    dual.loss.backward()
    assert logp.grad[0, 0].item() == 0.0 and logp.grad[0, 1].item() == pytest.approx(4.0, abs=1e-13)


def test_dual_clip_bound_holds_on_random_data():
    logp, logp_old, adv, mask = _random(3, B=16, T=16)
    logp = (logp.detach() * 3).requires_grad_()  # large ratios
    c = 2.5
    p = PPOParams(dual_clip=c, loss_agg="seq_mean_token_sum")
    per_tok = torch.stack([ppo_loss(logp[i:i + 1, j:j + 1], logp_old[i:i + 1, j:j + 1], adv[i:i + 1, j:j + 1],
                                    torch.ones(1, 1, dtype=torch.bool), p).loss
                           for i in range(16) for j in range(16)]).view(16, 16)
    neg = adv < 0
    assert (per_tok[neg] <= -c * adv[neg] + 1e-12).all()
    plain = PPOParams(loss_agg="seq_mean_token_sum")
    # positive advantages are untouched by dual-clip
    full_dual = ppo_loss(logp, logp_old, adv.clamp_min(0), mask, p).loss
    full_plain = ppo_loss(logp, logp_old, adv.clamp_min(0), mask, plain).loss
    torch.testing.assert_close(full_dual, full_plain, rtol=0, atol=0)


@pytest.mark.parametrize("agg", ["token_mean", "seq_mean_token_mean", "seq_mean_token_sum"])
def test_aggregation_modes_match_manual(agg):
    logp, logp_old, adv, mask = _random(4)
    out = ppo_loss(logp, logp_old, adv, mask, PPOParams(loss_agg=agg))
    s = (logp - logp_old).exp()
    per_tok = torch.maximum(-adv * s, -adv * s.clamp(0.8, 1.2))
    torch.testing.assert_close(out.loss, aggregate(per_tok, mask, agg), rtol=0, atol=1e-15)


def test_global_token_mean_dp_shards_sum_to_full_batch_loss_and_gradient():
    logp, logp_old, adv, mask = _random(5, B=8, T=7)
    full = ppo_loss(logp, logp_old, adv, mask, PPOParams(loss_agg="token_mean")).loss
    (g_full,) = torch.autograd.grad(full, logp)
    n_global = mask.sum()
    p = PPOParams(loss_agg="global_token_mean")
    shards = [ppo_loss(logp[i:i + 2], logp_old[i:i + 2], adv[i:i + 2], mask[i:i + 2], p, global_denominator=n_global)
              .loss for i in range(0, 8, 2)]  # 4 ranks × 2 sequences, uneven token counts
    total = sum(shards)
    (g_shards,) = torch.autograd.grad(total, logp)
    torch.testing.assert_close(total, full, rtol=0, atol=1e-15)
    torch.testing.assert_close(g_shards, g_full, rtol=0, atol=1e-16)


def test_weights_scale_per_token_terms_and_garbage_under_mask_is_ignored():
    logp, logp_old, adv, mask = _random(6)
    w = torch.rand(logp.shape, dtype=F64) + 0.5
    out = ppo_loss(logp, logp_old, adv, mask, PPOParams(loss_agg="seq_mean_token_sum"), weights=w)
    s = (logp - logp_old).exp()
    per_tok = torch.maximum(-adv * s, -adv * s.clamp(0.8, 1.2))
    torch.testing.assert_close(out.loss, aggregate(w * per_tok, mask, "seq_mean_token_sum"), rtol=0, atol=1e-15)
    # NaN/inf in masked positions (padding) must not reach the loss or the gradient
    bad_logp = logp.detach().masked_fill(~mask, float("inf")).requires_grad_()
    bad_adv = adv.masked_fill(~mask, float("nan"))
    clean = ppo_loss(logp, logp_old, adv, mask, PPOParams()).loss
    dirty = ppo_loss(bad_logp, logp_old.masked_fill(~mask, float("-inf")), bad_adv, mask, PPOParams())
    torch.testing.assert_close(dirty.loss, clean, rtol=0, atol=0)
    dirty.loss.backward()
    assert torch.isfinite(bad_logp.grad).all() and (bad_logp.grad[~mask] == 0).all()


def test_log_ratio_clamp_keeps_loss_finite_in_float32():
    logp_old = torch.zeros(1, 1)
    logp = torch.full((1, 1), 200.0, requires_grad=True)  # exp(200) overflows float32
    out = ppo_loss(logp, logp_old, -torch.ones(1, 1), torch.ones(1, 1, dtype=torch.bool), PPOParams())
    assert torch.isfinite(out.loss) and out.loss.item() == pytest.approx(math.exp(20.0), rel=1e-6)
