import pytest
import torch

from alignrl.anchors.common import AnchorUpdate
from alignrl.anchors.ema import EMAParams, ema, ema_rate
from alignrl.registry import ANCHORS


def _rand(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _t(*xs, dtype=torch.float64):
    return torch.tensor(xs, dtype=dtype)


def test_registered_with_params():
    entry = ANCHORS.entry("ema")
    assert entry.fn is ema and entry.params is EMAParams


def test_two_steps_by_hand_in_place():
    anchor, policy = {"w": _t(0.0, 10.0)}, {"w": _t(10.0, 0.0)}
    w = anchor["w"]
    # β = 0.9: 0.9·[0, 10] + 0.1·[10, 0] = [1, 9]; again: 0.9·[1, 9] + 0.1·[10, 0] = [1.9, 8.1]
    assert ema(anchor, policy, 1, EMAParams(decay=0.9)) == AnchorUpdate(anchor=True)
    torch.testing.assert_close(anchor["w"], _t(1.0, 9.0), rtol=0, atol=1e-15)
    ema(anchor, policy, 2, EMAParams(decay=0.9))
    torch.testing.assert_close(anchor["w"], _t(1.9, 8.1), rtol=0, atol=1e-14)
    assert anchor["w"] is w  # updated in place, the same tensor object
    assert torch.equal(policy["w"], _t(10.0, 0.0))


def test_decay_zero_copies_and_decay_one_keeps():
    policy = {"w": _rand(4, 3, seed=1)}
    anchor = {"w": _rand(4, 3, seed=0)}
    ema(anchor, policy, 1, EMAParams(decay=0.0))
    assert torch.equal(anchor["w"], policy["w"])
    before = _rand(4, 3, seed=0)
    anchor = {"w": before.clone()}
    assert ema(anchor, policy, 1, EMAParams(decay=1.0)) == AnchorUpdate()
    assert torch.equal(anchor["w"], before)


def test_bias_corrected_first_step_equals_policy():
    policy = {"w": _rand(5, seed=1)}
    anchor = {"w": torch.full((5,), 123.0, dtype=torch.float64)}  # initial content is irrelevant
    ema(anchor, policy, 1, EMAParams(decay=0.95, bias_correction=True))
    assert torch.equal(anchor["w"], policy["w"])


def test_bias_corrected_matches_zero_initialised_debiased_ema():
    # brute force: m_t = β·m_{t−1} + (1−β)·θ_t from m_0 = 0, debiased m_t / (1 − β^t)
    beta, steps = 0.8, 6
    thetas = [_rand(7, seed=s) for s in range(steps)]
    anchor = {"w": torch.zeros(7, dtype=torch.float64)}
    m = [0.0] * 7
    for t, th in enumerate(thetas, start=1):
        ema(anchor, {"w": th}, t, EMAParams(decay=beta, bias_correction=True))
        m = [beta * mi + (1 - beta) * x for mi, x in zip(m, th.tolist())]
        expected = torch.tensor([mi / (1 - beta**t) for mi in m], dtype=torch.float64)
        torch.testing.assert_close(anchor["w"], expected, rtol=0, atol=1e-13)


def test_rate():
    assert ema_rate(5, EMAParams(decay=0.9)) == pytest.approx(0.1, abs=1e-15)
    # (1 − 0.9) / (1 − 0.9²) = 0.1 / 0.19
    assert ema_rate(2, EMAParams(decay=0.9, bias_correction=True)) == pytest.approx(0.1 / 0.19, abs=1e-15)
    assert ema_rate(3, EMAParams(decay=1.0, bias_correction=True)) == 0.0
    with pytest.raises(ValueError, match="step"):
        ema_rate(0, EMAParams(bias_correction=True))
    with pytest.raises(ValueError, match="decay"):
        EMAParams(decay=1.5)


def test_dtypes_bf16_anchor_and_fp32_shadow():
    policy = {"w": torch.full((3,), 2.0, dtype=torch.bfloat16)}
    anchor = {"w": torch.ones(3, dtype=torch.bfloat16)}
    ema(anchor, policy, 1, EMAParams(decay=0.5))
    assert anchor["w"].dtype == torch.bfloat16 and torch.equal(anchor["w"], torch.full((3,), 1.5, dtype=torch.bfloat16))
    # documented limit: 1 + 0.001·(2 − 1) = 1.001 rounds back to 1 in bf16 (spacing 2^-7 near 1), so a
    # bf16 EMA with β = 0.999 never moves; an fp32 anchor fed by the same bf16 policy does
    stalled = {"w": torch.ones(3, dtype=torch.bfloat16)}
    shadow = {"w": torch.ones(3, dtype=torch.float32)}
    for t in range(1, 4):
        ema(stalled, policy, t, EMAParams(decay=0.999))
        ema(shadow, policy, t, EMAParams(decay=0.999))
    assert torch.equal(stalled["w"], torch.ones(3, dtype=torch.bfloat16))
    # 1 − (1 − 0.001)^3 = 0.002997001 above 1
    torch.testing.assert_close(shadow["w"], torch.full((3,), 1.002997001), rtol=0, atol=1e-6)


def test_integer_buffers_follow_policy_and_keys_are_checked():
    anchor = {"w": _t(0.0), "n": torch.tensor([1])}
    ema(anchor, {"w": _t(1.0), "n": torch.tensor([2])}, 1, EMAParams(decay=0.5))
    assert anchor["n"].item() == 2
    with pytest.raises(ValueError, match="keys differ"):
        ema(anchor, {"w": _t(1.0)}, 2, EMAParams())
