"""GRPO / Dr. GRPO group-normalised advantages."""

import pytest
import torch

from alignrl.advantages.base import AdvantageInputs, contiguous_groups
from alignrl.advantages.grpo import GRPOParams, grpo_advantages
from alignrl.registry import ADVANTAGES

F64 = torch.float64


def _x(rewards, group_index, T=3, mask=None, token_rewards=None):
    r = torch.tensor(rewards, dtype=F64)
    mask = torch.ones(len(rewards), T, dtype=torch.bool) if mask is None else mask
    return AdvantageInputs(rewards=r, mask=mask, group_index=torch.tensor(group_index), token_rewards=token_rewards)


def test_registered():
    entry = ADVANTAGES.entry("grpo")
    assert entry.fn is grpo_advantages and entry.params is GRPOParams


def test_by_hand():
    # group 0: [1, 2, 3], mean 2, unbiased std sqrt(((1)²+0+(1)²)/2) = 1 -> [-1, 0, 1]
    # group 1: [0, 4], mean 2, unbiased std sqrt((4+4)/1) = 2√2 -> [-2, 2]/(2√2) = [-1/√2, 1/√2]
    x = _x([1.0, 2.0, 3.0, 0.0, 4.0], [0, 0, 0, 1, 1])
    out = grpo_advantages(x, GRPOParams(eps=0.0))
    s = 2**-0.5
    torch.testing.assert_close(out.adv[:, 0], torch.tensor([-1.0, 0.0, 1.0, -s, s], dtype=F64), rtol=0, atol=1e-15)
    # Dr. GRPO keeps R − mean: [-1, 0, 1, -2, 2]
    dr = grpo_advantages(x, GRPOParams(scale_std=False))
    torch.testing.assert_close(dr.adv[:, 0], torch.tensor([-1.0, 0.0, 1.0, -2.0, 2.0], dtype=F64), rtol=0, atol=0)
    # population std for group 0 is sqrt(2/3): [-1, 0, 1]·sqrt(3/2)
    pop = grpo_advantages(x, GRPOParams(eps=0.0, unbiased_std=False))
    assert pop.adv[2, 0].item() == pytest.approx(1.5**0.5, abs=1e-15)


def test_sums_to_zero_per_group_and_broadcasts_over_tokens():
    torch.manual_seed(0)
    B, G, T = 12, 4, 5
    r, gid = torch.randn(B, dtype=F64), contiguous_groups(B, G)
    mask = torch.rand(B, T) > 0.3
    for p in (GRPOParams(), GRPOParams(scale_std=False)):
        full = grpo_advantages(AdvantageInputs(rewards=r, mask=torch.ones(B, T, dtype=torch.bool), group_index=gid), p)
        seq = full.adv[:, 0]  # (B,)
        assert (full.adv == seq[:, None]).all()  # one value per sequence, on every token
        torch.testing.assert_close(seq.view(-1, G).sum(1), torch.zeros(B // G, dtype=F64), rtol=0, atol=1e-13)
        # the mask only zeroes tokens; it does not change the sequence's advantage
        masked = grpo_advantages(AdvantageInputs(rewards=r, mask=mask, group_index=gid), p).adv
        torch.testing.assert_close(masked, seq[:, None] * mask, rtol=0, atol=0)


def test_identical_rewards_give_zero_and_singleton_group_gives_zero():
    out = grpo_advantages(_x([0.5, 0.5, 0.5, 7.0], [0, 0, 0, 1]), GRPOParams())
    assert (out.adv == 0).all()


def test_permutation_equivariant_with_non_contiguous_groups():
    torch.manual_seed(1)
    r = torch.randn(8, dtype=F64)
    gid = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    mask = torch.ones(8, 2, dtype=torch.bool)
    a = grpo_advantages(AdvantageInputs(rewards=r, mask=mask, group_index=gid), GRPOParams()).adv
    perm = torch.randperm(8)
    b = grpo_advantages(AdvantageInputs(rewards=r[perm], mask=mask, group_index=gid[perm]), GRPOParams()).adv
    torch.testing.assert_close(b, a[perm], rtol=0, atol=1e-15)


def test_batch_std_scope():
    x = _x([1.0, 2.0, 3.0, 0.0, 4.0], [0, 0, 0, 1, 1])
    # batch: mean 2, unbiased std sqrt((1+0+1+4+4)/4) = sqrt(2.5); group means [2,2,2,2,2]
    out = grpo_advantages(x, GRPOParams(std_scope="batch", eps=0.0))
    torch.testing.assert_close(
        out.adv[:, 0], torch.tensor([-1.0, 0.0, 1.0, -2.0, 2.0], dtype=F64) / 2.5**0.5, rtol=0, atol=1e-15
    )


def test_token_rewards_enter_the_return():
    tok = torch.tensor([[0.0, 0.0], [0.0, 1.0]], dtype=F64)  # R = [0, 0 + 1]
    x = _x([0.0, 0.0], [0, 0], T=2, token_rewards=tok)
    out = grpo_advantages(x, GRPOParams(scale_std=False))
    assert out.adv[:, 0].tolist() == [-0.5, 0.5]


def test_needs_group_index():
    x = AdvantageInputs(rewards=torch.zeros(2), mask=torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="group_index"):
        grpo_advantages(x, GRPOParams())
