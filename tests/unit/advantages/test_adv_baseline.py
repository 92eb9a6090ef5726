"""Plain REINFORCE baseline: R − b."""

import pytest
import torch

from alignrl.advantages.base import AdvantageInputs
from alignrl.advantages.baseline import BaselineParams, baseline_advantages
from alignrl.registry import ADVANTAGES

F64 = torch.float64


def _x(group_index=None):
    mask = torch.tensor([[1, 1], [1, 0], [1, 1], [0, 1]], dtype=torch.bool)
    gid = None if group_index is None else torch.tensor(group_index)
    return AdvantageInputs(rewards=torch.tensor([1.0, 2.0, 3.0, 6.0], dtype=F64), mask=mask, group_index=gid)


def test_registered():
    entry = ADVANTAGES.entry("baseline")
    assert entry.fn is baseline_advantages and entry.params is BaselineParams


@pytest.mark.parametrize(
    "params, seq",
    [
        (BaselineParams(baseline="none"), [1.0, 2.0, 3.0, 6.0]),
        (BaselineParams(baseline="constant", constant=0.5), [0.5, 1.5, 2.5, 5.5]),
        (BaselineParams(baseline="batch_mean"), [-2.0, -1.0, 0.0, 3.0]),  # mean (1+2+3+6)/4 = 3
        (BaselineParams(baseline="group_mean"), [-0.5, 0.5, -1.5, 1.5]),  # groups {1,2}: 1.5, {3,6}: 4.5
    ],
)
def test_by_hand(params, seq):
    out = baseline_advantages(_x([0, 0, 1, 1]), params)
    expected = torch.tensor(seq, dtype=F64)[:, None] * _x().mask
    torch.testing.assert_close(out.adv, expected, rtol=0, atol=0)


def test_group_mean_needs_groups_and_batch_mean_sums_to_zero():
    with pytest.raises(ValueError, match="group_index"):
        baseline_advantages(_x(), BaselineParams(baseline="group_mean"))
    torch.manual_seed(0)
    x = AdvantageInputs(rewards=torch.randn(7, dtype=F64), mask=torch.ones(7, 1, dtype=torch.bool))
    assert baseline_advantages(x, BaselineParams()).adv.sum().item() == pytest.approx(0.0, abs=1e-14)
