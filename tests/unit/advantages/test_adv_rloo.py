"""RLOO leave-one-out advantages against explicit loops."""

import pytest
import torch

from alignrl.advantages.base import AdvantageInputs, contiguous_groups
from alignrl.advantages.grpo import GRPOParams, grpo_advantages
from alignrl.advantages.rloo import RLOOParams, rloo_advantages
from alignrl.registry import ADVANTAGES

F64 = torch.float64


def test_registered():
    entry = ADVANTAGES.entry("rloo")
    assert entry.fn is rloo_advantages and entry.params is RLOOParams


def test_by_hand():
    # [1, 2, 3]: A_1 = 1 − (2+3)/2 = −1.5;  A_2 = 2 − (1+3)/2 = 0;  A_3 = 3 − (1+2)/2 = 1.5
    x = AdvantageInputs(rewards=torch.tensor([1.0, 2.0, 3.0], dtype=F64), mask=torch.ones(3, 2, dtype=torch.bool),
                        group_index=torch.zeros(3, dtype=torch.long))
    out = rloo_advantages(x, RLOOParams())
    torch.testing.assert_close(out.adv, torch.tensor([[-1.5] * 2, [0.0] * 2, [1.5] * 2], dtype=F64), rtol=0, atol=0)


def test_matches_explicit_loops():
    torch.manual_seed(0)
    gid = torch.tensor([4, 4, 2, 2, 2, 4, 9, 9, 2, 9, 9, 9])  # groups of size 3, 4, 5, interleaved
    r = torch.randn(12, dtype=F64)
    mask = torch.rand(12, 4) > 0.2
    out = rloo_advantages(AdvantageInputs(rewards=r, mask=mask, group_index=gid), RLOOParams())
    for i in range(12):
        others = [r[j].item() for j in range(12) if gid[j] == gid[i] and j != i]
        expected = r[i].item() - sum(others) / len(others)
        for t in range(4):
            assert out.adv[i, t].item() == pytest.approx(expected if mask[i, t] else 0.0, abs=1e-14)


def test_identical_rewards_zero_singleton_zero():
    x = AdvantageInputs(rewards=torch.tensor([0.3, 0.3, 0.3, 5.0], dtype=F64),
                        mask=torch.ones(4, 2, dtype=torch.bool), group_index=torch.tensor([0, 0, 0, 1]))
    assert (rloo_advantages(x, RLOOParams()).adv == 0).all()


def test_equals_scaled_dr_grpo():
    # R_i − mean_{j≠i} R_j = G/(G−1)·(R_i − mean R): RLOO is Dr. GRPO scaled by G/(G−1)
    torch.manual_seed(1)
    B, G = 12, 4
    x = AdvantageInputs(rewards=torch.randn(B, dtype=F64), mask=torch.ones(B, 3, dtype=torch.bool),
                        group_index=contiguous_groups(B, G))
    rloo = rloo_advantages(x, RLOOParams()).adv
    dr = grpo_advantages(x, GRPOParams(scale_std=False)).adv
    torch.testing.assert_close(rloo, dr * G / (G - 1), rtol=0, atol=1e-14)


def test_whiten_over_batch():
    torch.manual_seed(2)
    x = AdvantageInputs(rewards=torch.randn(8, dtype=F64), mask=torch.ones(8, 2, dtype=torch.bool),
                        group_index=contiguous_groups(8, 4))
    a = rloo_advantages(x, RLOOParams(whiten=True, eps=0.0)).adv[:, 0]
    assert a.mean().item() == pytest.approx(0.0, abs=1e-14)
    assert a.std().item() == pytest.approx(1.0, abs=1e-14)  # unbiased std, as TRL's nanstd
