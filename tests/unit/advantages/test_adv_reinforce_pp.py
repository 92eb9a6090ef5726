"""REINFORCE++: return to go with dense KL rewards, global token whitening."""

import math

import pytest
import torch

from alignrl.advantages.base import AdvantageInputs, contiguous_groups
from alignrl.advantages.reinforce_pp import ReinforcePPParams, discounted_returns, reinforce_pp_advantages
from alignrl.registry import ADVANTAGES

F64 = torch.float64


def test_registered():
    entry = ADVANTAGES.entry("reinforce_pp")
    assert entry.fn is reinforce_pp_advantages and entry.params is ReinforcePPParams


def test_by_hand():
    # rewards [1, 0]; KL penalties (token_rewards) [[-0.1, -0.2], [0.0, -0.1]]; γ = 1
    # row 0: r = [-0.1, -0.2 + 1] = [-0.1, 0.8] -> G = [0.7, 0.8]
    # row 1: r = [0.0, -0.1]                    -> G = [-0.1, -0.1]
    # mean = 1.3/4 = 0.325; deviations [0.375, 0.475, -0.425, -0.425]
    # population var = (0.140625 + 0.225625 + 0.180625 + 0.180625)/4 = 0.181875
    x = AdvantageInputs(rewards=torch.tensor([1.0, 0.0], dtype=F64), mask=torch.ones(2, 2, dtype=torch.bool),
                        token_rewards=torch.tensor([[-0.1, -0.2], [0.0, -0.1]], dtype=F64))
    out = reinforce_pp_advantages(x, ReinforcePPParams(eps=0.0))
    std = math.sqrt(0.181875)
    expected = torch.tensor([[0.375, 0.475], [-0.425, -0.425]], dtype=F64) / std
    torch.testing.assert_close(out.adv, expected, rtol=0, atol=1e-14)


def _loop_returns(r, mask, gamma):
    g = torch.zeros_like(r)
    for b in range(r.shape[0]):
        acc = 0.0
        for t in reversed(range(r.shape[1])):
            if mask[b, t]:
                acc = r[b, t].item() + gamma * acc
                g[b, t] = acc
    return g


def test_discounted_returns_match_loop_with_gaps():
    torch.manual_seed(0)
    mask = torch.rand(4, 7) > 0.3
    r = torch.randn(4, 7, dtype=F64) * mask
    for gamma in (1.0, 0.9):
        torch.testing.assert_close(discounted_returns(r, mask, gamma), _loop_returns(r, mask, gamma), rtol=0, atol=1e-13)


def test_whitened_over_all_masked_tokens():
    torch.manual_seed(1)
    mask = torch.rand(6, 5) > 0.3
    x = AdvantageInputs(rewards=torch.randn(6, dtype=F64), mask=mask, token_rewards=torch.randn(6, 5, dtype=F64))
    a = reinforce_pp_advantages(x, ReinforcePPParams(gamma=0.95, eps=0.0)).adv
    assert a[mask].mean().item() == pytest.approx(0.0, abs=1e-13)
    assert a[mask].std(unbiased=False).item() == pytest.approx(1.0, abs=1e-13)
    assert (a[~mask] == 0).all()


def test_group_baseline_subtracts_group_mean_first():
    # no KL: every token of a row has G = r − mean_g(r); whitening then rescales globally
    r = torch.tensor([1.0, 3.0, 5.0, 5.0], dtype=F64)
    x = AdvantageInputs(rewards=r, mask=torch.ones(4, 2, dtype=torch.bool), group_index=contiguous_groups(4, 2))
    a = reinforce_pp_advantages(x, ReinforcePPParams(group_baseline=True, eps=0.0)).adv
    # centred: [-1, 1, 0, 0] on 2 tokens each; mean 0, population std sqrt(4/8) -> [-√2, √2, 0, 0]
    s = math.sqrt(2.0)
    torch.testing.assert_close(a, torch.tensor([[-s, -s], [s, s], [0.0, 0.0], [0.0, 0.0]], dtype=F64), rtol=0, atol=1e-14)
    with pytest.raises(ValueError, match="group_index"):
        reinforce_pp_advantages(AdvantageInputs(rewards=r, mask=x.mask), ReinforcePPParams(group_baseline=True))
