"""GAE: hand-worked values, an explicit per-sequence backward loop, λ limits, masks, whitening."""

import pytest
import torch

from alignrl.advantages.base import AdvantageInputs, dense_rewards
from alignrl.advantages.gae import GAEParams, gae_advantages
from alignrl.registry import ADVANTAGES

F64 = torch.float64


def _x(values, mask, reward=1.0, token_rewards=None):
    values = torch.tensor([values], dtype=F64)
    mask = torch.tensor([mask], dtype=torch.bool)
    tok = None if token_rewards is None else torch.tensor([token_rewards], dtype=F64)
    return AdvantageInputs(rewards=torch.tensor([reward], dtype=F64), mask=mask, values=values, token_rewards=tok)


def test_registered():
    entry = ADVANTAGES.entry("gae")
    assert entry.fn is gae_advantages and entry.params is GAEParams


def test_by_hand():
    # V = [0.2, 0.4, 0.6], r = 1 on the last token, γ = 0.9, λ = 0.5 (γλ = 0.45)
    # δ_2 = 1 − 0.6 = 0.4;  δ_1 = 0.9·0.6 − 0.4 = 0.14;  δ_0 = 0.9·0.4 − 0.2 = 0.16
    # A_2 = 0.4;  A_1 = 0.14 + 0.45·0.4 = 0.32;  A_0 = 0.16 + 0.45·0.32 = 0.304
    # R = A + V = [0.504, 0.72, 1.0]
    out = gae_advantages(_x([0.2, 0.4, 0.6], [1, 1, 1]), GAEParams(gamma=0.9, lam=0.5, whiten=False))
    torch.testing.assert_close(out.adv, torch.tensor([[0.304, 0.32, 0.4]], dtype=F64), rtol=0, atol=1e-15)
    torch.testing.assert_close(out.returns, torch.tensor([[0.504, 0.72, 1.0]], dtype=F64), rtol=0, atol=1e-15)


def test_masked_gap_is_skipped_by_hand():
    # mask [1, 0, 1]: the step after t=0 is t=2; V at the masked t=1 (123) is ignored
    # δ_2 = 1 − 0.6 = 0.4 = A_2;  δ_0 = 0.9·0.6 − 0.2 = 0.34;  A_0 = 0.34 + 0.45·0.4 = 0.52
    out = gae_advantages(_x([0.2, 123.0, 0.6], [1, 0, 1]), GAEParams(gamma=0.9, lam=0.5, whiten=False))
    torch.testing.assert_close(out.adv, torch.tensor([[0.52, 0.0, 0.4]], dtype=F64), rtol=0, atol=1e-15)
    torch.testing.assert_close(out.returns, torch.tensor([[0.72, 0.0, 1.0]], dtype=F64), rtol=0, atol=1e-15)


def _loop_reference(r, v, mask, gamma, lam):
    """Scalar python loop per sequence over its response tokens only (CleanRL-style)."""
    adv = torch.zeros_like(r)
    for b in range(r.shape[0]):
        idx = [t for t in range(r.shape[1]) if mask[b, t]]
        last = 0.0
        for k in reversed(range(len(idx))):
            t = idx[k]
            next_v = v[b, idx[k + 1]].item() if k + 1 < len(idx) else 0.0
            delta = r[b, t].item() + gamma * next_v - v[b, t].item()
            last = delta + gamma * lam * last
            adv[b, t] = last
    return adv


def test_matches_explicit_loop_with_random_masks_and_token_rewards():
    torch.manual_seed(0)
    B, T = 5, 9
    mask = torch.rand(B, T) > 0.35
    mask[0] = False  # an empty row
    x = AdvantageInputs(
        rewards=torch.randn(B, dtype=F64), mask=mask,
        token_rewards=torch.randn(B, T, dtype=F64) * 0.1, values=torch.randn(B, T, dtype=F64),
    )
    for gamma, lam in [(1.0, 0.95), (0.9, 0.3), (0.99, 1.0), (1.0, 0.0)]:
        out = gae_advantages(x, GAEParams(gamma=gamma, lam=lam, whiten=False))
        ref = _loop_reference(dense_rewards(x), x.values, mask, gamma, lam)
        torch.testing.assert_close(out.adv, ref, rtol=0, atol=1e-12)
        torch.testing.assert_close(out.returns, (ref + x.values) * mask, rtol=0, atol=1e-12)


def test_lambda_limits():
    torch.manual_seed(1)
    v = torch.randn(1, 4, dtype=F64)
    x = AdvantageInputs(rewards=torch.tensor([2.0], dtype=F64), mask=torch.ones(1, 4, dtype=torch.bool), values=v)
    # λ = 1, γ = 1: A_t = (Monte-Carlo return) − V_t = 2 − V_t, so the returns are all 2
    one = gae_advantages(x, GAEParams(gamma=1.0, lam=1.0, whiten=False))
    torch.testing.assert_close(one.returns, torch.full((1, 4), 2.0, dtype=F64), rtol=0, atol=1e-14)
    # λ = 0: A_t = δ_t = r_t + V_{t+1} − V_t
    zero = gae_advantages(x, GAEParams(gamma=1.0, lam=0.0, whiten=False))
    nxt = torch.cat([v[:, 1:], torch.zeros(1, 1, dtype=F64)], dim=1)
    delta = torch.tensor([[0.0, 0.0, 0.0, 2.0]], dtype=F64) + nxt - v
    torch.testing.assert_close(zero.adv, delta, rtol=0, atol=1e-14)


def test_whiten_normalises_advantages_not_returns():
    torch.manual_seed(2)
    mask = torch.rand(4, 6) > 0.3
    x = AdvantageInputs(rewards=torch.randn(4, dtype=F64), mask=mask, values=torch.randn(4, 6, dtype=F64))
    raw = gae_advantages(x, GAEParams(whiten=False))
    w = gae_advantages(x, GAEParams(whiten=True, eps=0.0))
    assert w.adv[mask].mean().item() == pytest.approx(0.0, abs=1e-13)
    assert w.adv[mask].std(unbiased=False).item() == pytest.approx(1.0, abs=1e-13)
    torch.testing.assert_close(w.returns, raw.returns, rtol=0, atol=0)


def test_values_get_no_gradient_and_missing_values_raise():
    v = torch.zeros(1, 2, dtype=F64, requires_grad=True)
    x = AdvantageInputs(rewards=torch.ones(1, dtype=F64), mask=torch.ones(1, 2, dtype=torch.bool), values=v)
    out = gae_advantages(x, GAEParams())
    assert not out.adv.requires_grad and not out.returns.requires_grad
    with pytest.raises(ValueError, match="values"):
        gae_advantages(AdvantageInputs(rewards=x.rewards, mask=x.mask), GAEParams())
