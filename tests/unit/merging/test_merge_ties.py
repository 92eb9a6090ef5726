import pytest
import torch

from alignrl.merging.task_arithmetic import TaskArithmeticParams, task_arithmetic
from alignrl.merging.ties import TiesParams, ties, trim_by_magnitude
from alignrl.registry import MERGES


def _rand(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _t(*xs):
    return torch.tensor(xs, dtype=torch.float64)


def test_registered_with_params():
    entry = MERGES.entry("ties")
    assert entry.fn is ties and entry.params is TiesParams


def test_by_hand():
    base = torch.zeros(5, dtype=torch.float64)  # so δ_m = θ_m
    d1 = _t(3.0, -1.0, 0.5, 0.2, 2.5)
    d2 = _t(-2.0, -2.5, 0.1, 1.5, 3.0)
    d3 = _t(1.0, 4.0, -0.2, -3.0, 2.0)
    # density 0.4 of 5 -> keep k = 2 per model:
    #   δ̂1 = [3, 0, 0, 0, 2.5]   δ̂2 = [0, −2.5, 0, 0, 3]   δ̂3 = [0, 4, 0, −3, 0]
    # mass Σ δ̂ = [3, 1.5, 0, −3, 5.5] -> γ = [+, +, 0, −, +]
    # disjoint means: [3/1, 4/1, (no agreeing model) 0, −3/1, (2.5 + 3)/2] = [3, 4, 0, −3, 2.75]
    out = ties([d1, d2, d3], base, TiesParams(density=0.4))
    torch.testing.assert_close(out, _t(3.0, 4.0, 0.0, -3.0, 2.75), rtol=0, atol=1e-15)


def _ties_loop(base, thetas, density, weights, lam):
    """Elementwise reference: python floats and loops only."""
    n, m = len(base), len(thetas)
    k = max(1, int(density * n))
    trimmed = []
    for th in thetas:
        d = [th[i] - base[i] for i in range(n)]
        keep = set(sorted(range(n), key=lambda i: -abs(d[i]))[:k])
        trimmed.append([d[i] if i in keep else 0.0 for i in range(n)])
    out = []
    for i in range(n):
        x = [weights[j] * trimmed[j][i] for j in range(m)]
        mass = sum(x)
        gamma = (mass > 0) - (mass < 0)
        num = den = 0.0
        for j in range(m):
            if gamma != 0 and ((x[j] > 0) - (x[j] < 0)) == gamma:
                num += x[j]
                den += weights[j]
        out.append(base[i] + lam * (num / den if den != 0 else 0.0))
    return out


@pytest.mark.parametrize("density", [0.25, 0.5, 1.0])
def test_matches_elementwise_loop(density):
    base = _rand(12, seed=0)
    thetas = [_rand(12, seed=s) for s in (1, 2, 3)]
    weights, lam = (1.0, 0.5, 2.0), 0.8
    expected = _ties_loop(base.tolist(), [t.tolist() for t in thetas], density, weights, lam)
    out = ties(thetas, base, TiesParams(density=density, weights=weights, lam=lam))
    torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-14)


def test_density_one_without_sign_conflicts_is_task_arithmetic_of_the_mean():
    # all task vectors positive: every model agrees everywhere, so the disjoint mean is the weighted mean
    # Σ w_m δ_m / Σ w_m, i.e. task arithmetic with weights w_m / Σ w
    base = _rand(4, 6, seed=0)
    thetas = [base + _rand(4, 6, seed=s).abs() + 0.1 for s in (1, 2, 3)]
    w = (1.0, 2.0, 3.0)
    out = ties(thetas, base, TiesParams(density=1.0, weights=w, lam=0.9))
    ta = task_arithmetic(thetas, base, TaskArithmeticParams(weights=tuple(x / 6.0 for x in w), lam=0.9))
    torch.testing.assert_close(out, ta, rtol=0, atol=1e-14)
    # and for one model TIES at density 1 is task arithmetic exactly
    one = ties(thetas[:1], base, TiesParams(density=1.0))
    torch.testing.assert_close(one, task_arithmetic(thetas[:1], base, TaskArithmeticParams()), rtol=0, atol=0)


def test_density_zero_keeps_base_and_trim_count():
    base, th = _rand(10, seed=0), _rand(10, seed=1)
    torch.testing.assert_close(ties([th], base, TiesParams(density=0.0)), base, rtol=0, atol=0)
    assert int((trim_by_magnitude(th - base, 0.3) != 0).sum()) == 3
    assert int((trim_by_magnitude(th - base, 0.01) != 0).sum()) == 1  # at least one survives


def test_cancelling_mass_keeps_base():
    base = torch.zeros(1, dtype=torch.float64)
    out = ties([_t(1.0), _t(-1.0)], base, TiesParams(density=1.0))
    assert out.item() == 0.0


def test_bf16_preserved():
    base, a, b = (_rand(8, 8, seed=s, dtype=torch.float32).bfloat16() for s in range(3))
    out = ties([a, b], base, TiesParams(density=0.5))
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, ties([a.float(), b.float()], base.float(), TiesParams(density=0.5)).bfloat16())


def test_per_model_density_equal_to_the_scalar_gives_the_same_merge_and_zero_drops_a_model():
    g = torch.Generator().manual_seed(3)
    base, a, b = (torch.randn(10, 12, generator=g, dtype=torch.float64) for _ in range(3))
    assert torch.equal(ties([a, b], base, TiesParams(density=0.4)), ties([a, b], base, TiesParams(density=(0.4, 0.4))))
    only_a = ties([a, b], base, TiesParams(density=(1.0, 0.0)))
    assert torch.allclose(only_a, a)  # b's task vector trimmed to nothing: the disjoint mean is a's alone
    with pytest.raises(ValueError, match="2 density values for 3 models"):
        ties([a, b, a], base, TiesParams(density=(0.4, 0.4)))


def test_without_normalize_the_agreeing_task_vectors_are_summed():
    g = torch.Generator().manual_seed(4)
    base = torch.zeros(50, dtype=torch.float64)
    a = torch.randn(50, generator=g, dtype=torch.float64).abs()
    b = torch.randn(50, generator=g, dtype=torch.float64).abs()  # same signs everywhere: all agree
    summed = ties([a, b], base, TiesParams(density=1.0, weights=(0.5, 2.0), normalize=False))
    assert torch.allclose(summed, 0.5 * a + 2.0 * b)
    mean = ties([a, b], base, TiesParams(density=1.0, weights=(0.5, 2.0)))
    assert torch.allclose(mean, (0.5 * a + 2.0 * b) / 2.5)
