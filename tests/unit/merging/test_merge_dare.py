import pytest
import torch

from alignrl.merging.dare import DareParams, dare, drop_and_rescale
from alignrl.merging.task_arithmetic import TaskArithmeticParams, task_arithmetic
from alignrl.merging.ties import TiesParams, ties
from alignrl.registry import MERGES


def _rand(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_registered_with_params():
    entry = MERGES.entry("dare")
    assert entry.fn is dare and entry.params is DareParams


def test_drop_zero_is_task_arithmetic_and_ties():
    base = _rand(5, 7, seed=0)
    ts = [_rand(5, 7, seed=s) for s in (1, 2)]
    out = dare(ts, base, DareParams(drop=0.0, weights=(0.5, 1.5), lam=0.8))
    ta = task_arithmetic(ts, base, TaskArithmeticParams(weights=(0.5, 1.5), lam=0.8))
    torch.testing.assert_close(out, ta, rtol=0, atol=0)
    out = dare(ts, base, DareParams(drop=0.0, variant="ties", lam=0.8))
    torch.testing.assert_close(out, ties(ts, base, TiesParams(density=1.0, lam=0.8)), rtol=0, atol=0)


def test_survivors_are_rescaled_by_hand():
    # δ = 1 everywhere, p = 0.75: every coordinate is 0 (dropped) or 1 / (1 − 0.75) = 4
    base = torch.zeros(1000, dtype=torch.float64)
    out = dare([base + 1.0], base, DareParams(drop=0.75, seed=3))
    assert set(out.unique().tolist()) <= {0.0, 4.0}
    # the kept fraction is near 1 − p: binomial std sqrt(0.25·0.75/1000) ≈ 0.014, so 5σ = 0.07
    assert abs((out != 0).double().mean().item() - 0.25) < 0.07


def test_deterministic_by_seed():
    base, t = _rand(64, seed=0), _rand(64, seed=1)
    a = dare([t], base, DareParams(drop=0.5, seed=7))
    assert torch.equal(a, dare([t], base, DareParams(drop=0.5, seed=7)))
    assert not torch.equal(a, dare([t], base, DareParams(drop=0.5, seed=8)))


def test_unbiased_in_expectation():
    # E[δ̃] = δ. Per element δ̃/δ ∈ {0, 1/(1−p)} has std sqrt(p/(1−p)) = 1 at p = 0.5, so the mean of
    # K = 20000 draws has std |δ|/sqrt(K) ≈ 0.0071·|δ|; assert within 5 of those standard errors.
    p, k = 0.5, 20000
    delta = _rand(64, seed=1)
    draws = drop_and_rescale(delta.expand(k, 64), p, torch.Generator().manual_seed(0))
    err = (draws.mean(dim=0) - delta).abs()
    assert (err <= 5 * delta.abs() / k**0.5).all()


def test_models_get_different_masks():
    base = torch.zeros(200, dtype=torch.float64)
    out = dare([base + 1.0, base + 1.0], base, DareParams(drop=0.5, weights=(1.0, 0.0)))
    out2 = dare([base + 1.0, base + 1.0], base, DareParams(drop=0.5, weights=(0.0, 1.0)))
    assert not torch.equal(out, out2)


def test_bf16_preserved_and_params_checked():
    base, t = _rand(32, seed=0, dtype=torch.float32).bfloat16(), _rand(32, seed=1, dtype=torch.float32).bfloat16()
    out = dare([t], base, DareParams(drop=0.3, seed=1))
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, dare([t.float()], base.float(), DareParams(drop=0.3, seed=1)).bfloat16())
    with pytest.raises(ValueError, match="drop must be"):
        DareParams(drop=1.0)
    with pytest.raises(ValueError, match="variant"):
        DareParams(variant="sum")


def test_l1_rescale_keeps_each_task_vectors_l1_norm_and_none_keeps_the_survivors_as_they_are():
    g = torch.Generator().manual_seed(0)
    deltas = torch.randn(3, 40, 30, generator=g, dtype=torch.float64)
    l1 = drop_and_rescale(deltas, [0.2, 0.5, 0.8], torch.Generator().manual_seed(1), "l1")
    assert torch.allclose(l1.abs().flatten(1).sum(1), deltas.abs().flatten(1).sum(1))
    none = drop_and_rescale(deltas, [0.2, 0.5, 0.8], torch.Generator().manual_seed(1), "none")
    kept = none != 0
    assert torch.equal(none[kept], deltas[kept])  # survivors untouched
    fractions = kept.flatten(1).double().mean(1)
    assert torch.allclose(fractions, torch.tensor([0.8, 0.5, 0.2], dtype=torch.float64), atol=0.05)  # per-model p
    assert torch.equal(l1 != 0, kept)  # same masks from the same seed


def test_normalize_divides_the_linear_variant_by_the_weights_sum():
    g = torch.Generator().manual_seed(2)
    base, a, b = (torch.randn(8, 8, generator=g, dtype=torch.float64) for _ in range(3))
    plain = dare([a, b], base, DareParams(drop=0.0, weights=(1.0, 3.0)))
    normalized = dare([a, b], base, DareParams(drop=0.0, weights=(1.0, 3.0), normalize=True))
    assert torch.allclose(normalized - base, (plain - base) / 4.0)
