import pytest
import torch

from alignrl.merging.linear import LinearParams, linear
from alignrl.registry import MERGES


def _rand(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_registered_with_params():
    entry = MERGES.entry("linear")
    assert entry.fn is linear and entry.params is LinearParams


def test_weighted_average_by_hand():
    a = torch.tensor([1.0, 2.0], dtype=torch.float64)
    b = torch.tensor([3.0, 6.0], dtype=torch.float64)
    # (1·[1, 2] + 3·[3, 6]) / (1 + 3) = [10, 20] / 4 = [2.5, 5.0]
    out = linear([a, b], None, LinearParams(weights=(1.0, 3.0)))
    torch.testing.assert_close(out, torch.tensor([2.5, 5.0], dtype=torch.float64), rtol=0, atol=1e-15)
    # without normalisation: [10, 20]
    out = linear([a, b], None, LinearParams(weights=(1.0, 3.0), normalize=False))
    torch.testing.assert_close(out, torch.tensor([10.0, 20.0], dtype=torch.float64), rtol=0, atol=1e-15)


def test_default_is_uniform_mean():
    xs = [_rand(4, 5, seed=s) for s in range(3)]
    out = linear(xs, None, LinearParams())
    torch.testing.assert_close(out, torch.stack(xs).mean(0), rtol=0, atol=1e-15)


def test_identical_inputs_are_a_fixed_point():
    x = _rand(7, 3)
    out = linear([x, x.clone(), x.clone()], None, LinearParams(weights=(0.3, 0.5, 0.2)))
    torch.testing.assert_close(out, x, rtol=4e-16, atol=0)  # a few ulp of float64 at most


def test_base_is_ignored():
    xs = [_rand(3, seed=s) for s in range(2)]
    assert torch.equal(linear(xs, _rand(3, seed=9), LinearParams()), linear(xs, None, LinearParams()))


def test_bf16_in_bf16_out_equals_rounded_fp32():
    xs = [_rand(8, 8, seed=s, dtype=torch.float32).bfloat16() for s in range(3)]
    p = LinearParams(weights=(0.2, 0.3, 0.5))
    out = linear(xs, None, p)
    assert out.dtype == torch.bfloat16 and out.device == xs[0].device
    assert torch.equal(out, linear([x.float() for x in xs], None, p).bfloat16())


def test_bad_inputs_raise():
    a = _rand(3)
    with pytest.raises(ValueError, match="sum to 0"):
        linear([a, a], None, LinearParams(weights=(1.0, -1.0)))
    with pytest.raises(ValueError, match="weights for"):
        linear([a, a], None, LinearParams(weights=(1.0,)))
    with pytest.raises(ValueError, match="one shape, dtype and device"):
        linear([a, a.float()], None, LinearParams())
    with pytest.raises(ValueError, match="floating-point"):
        linear([torch.ones(3, dtype=torch.long)], None, LinearParams())
