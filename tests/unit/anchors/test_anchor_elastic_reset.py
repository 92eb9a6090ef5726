import pytest
import torch

from alignrl.anchors.common import AnchorUpdate
from alignrl.anchors.elastic_reset import ElasticResetParams, elastic_reset, reset_
from alignrl.registry import ANCHORS


def _t(*xs, dtype=torch.float64):
    return torch.tensor(xs, dtype=dtype)


def test_registered_with_params():
    entry = ANCHORS.entry("elastic_reset")
    assert entry.fn is elastic_reset and entry.params is ElasticResetParams


def test_two_step_cycle_by_hand():
    init = {"w": _t(0.0)}
    ema = {"w": _t(0.0)}  # the EMA starts at θ_0
    policy = {"w": _t(10.0)}
    p = ElasticResetParams(period=2, decay=0.5)
    # step 1: ema = 0.5·0 + 0.5·10 = 5; no reset
    assert elastic_reset(ema, policy, 1, p, init=init) == AnchorUpdate(anchor=True)
    assert ema["w"].item() == 5.0 and policy["w"].item() == 10.0
    # training moves the policy to 20; step 2: ema = 0.5·5 + 0.5·20 = 12.5, then reset:
    # policy ← 12.5, ema ← θ_0 = 0
    policy["w"].fill_(20.0)
    assert elastic_reset(ema, policy, 2, p, init=init) == AnchorUpdate(anchor=True, policy=True)
    assert policy["w"].item() == 12.5 and ema["w"].item() == 0.0
    assert init["w"].item() == 0.0  # θ_0 untouched


def test_reset_postconditions_on_random_dicts():
    g = torch.Generator().manual_seed(0)
    keys = ("a", "b")
    init = {k: torch.randn(3, 4, generator=g, dtype=torch.float64) for k in keys}
    ema = {k: torch.randn(3, 4, generator=g, dtype=torch.float64) for k in keys}
    policy = {k: torch.randn(3, 4, generator=g, dtype=torch.float64) for k in keys}
    objects = {k: (policy[k], ema[k]) for k in keys}
    ema_before = {k: v.clone() for k, v in ema.items()}
    reset_(policy, ema, init)
    for k in keys:
        assert torch.equal(policy[k], ema_before[k]) and torch.equal(ema[k], init[k])
        assert policy[k] is objects[k][0] and ema[k] is objects[k][1]  # in place
        assert ema[k].data_ptr() != init[k].data_ptr()  # a copy, not an alias of θ_0


def test_bf16_policy_with_fp32_ema():
    init = {"w": torch.zeros(2)}
    ema = {"w": torch.zeros(2)}
    policy = {"w": torch.ones(2, dtype=torch.bfloat16)}
    elastic_reset(ema, policy, 1, ElasticResetParams(period=1, decay=0.75), init=init)
    # ema = 0.25 before the reset; policy takes it in bf16, ema goes back to 0
    assert policy["w"].dtype == torch.bfloat16 and torch.equal(policy["w"], torch.full((2,), 0.25, dtype=torch.bfloat16))
    assert torch.equal(ema["w"], torch.zeros(2))


def test_needs_init_and_valid_params():
    with pytest.raises(ValueError, match="needs init"):
        elastic_reset({"w": _t(0.0)}, {"w": _t(1.0)}, 1, ElasticResetParams(period=1))
    with pytest.raises(ValueError, match="period"):
        ElasticResetParams(period=0)
