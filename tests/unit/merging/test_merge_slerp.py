import math

import pytest
import torch

from alignrl.merging.slerp import SlerpParams, slerp
from alignrl.registry import MERGES


def _rand(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_registered_with_params():
    entry = MERGES.entry("slerp")
    assert entry.fn is slerp and entry.params is SlerpParams


def test_rotation_in_a_plane_by_hand():
    # v0 = 2·(1, 0), v1 = 2·(cos φ, sin φ): Ω = φ and SLERP walks the circle of radius 2 -> 2·(cos tφ, sin tφ)
    phi, t = 1.0, 0.3
    base = torch.tensor([0.5, -1.0], dtype=torch.float64)
    v0 = torch.tensor([2.0, 0.0], dtype=torch.float64)
    v1 = 2.0 * torch.tensor([math.cos(phi), math.sin(phi)], dtype=torch.float64)
    out = slerp([base + v0, base + v1], base, SlerpParams(t=t))
    expected = base + 2.0 * torch.tensor([math.cos(t * phi), math.sin(t * phi)], dtype=torch.float64)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-14)


def _slerp_by_hand(a, b, t):
    """Closed form with python floats: sin((1−t)Ω)/sin Ω·a + sin(tΩ)/sin Ω·b."""
    dot = sum(x * y for x, y in zip(a, b))
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b))
    omega = math.acos(dot / (na * nb))
    c0, c1 = math.sin((1 - t) * omega) / math.sin(omega), math.sin(t * omega) / math.sin(omega)
    return [c0 * x + c1 * y for x, y in zip(a, b)]


@pytest.mark.parametrize("t", [0.1, 0.5, 0.77])
def test_matches_closed_form_on_task_vectors(t):
    base, th0, th1 = _rand(2, 3, seed=0), _rand(2, 3, seed=1), _rand(2, 3, seed=2)
    d0, d1 = (th0 - base).flatten().tolist(), (th1 - base).flatten().tolist()
    expected = base + torch.tensor(_slerp_by_hand(d0, d1, t), dtype=torch.float64).reshape(2, 3)
    torch.testing.assert_close(slerp([th0, th1], base, SlerpParams(t=t)), expected, rtol=0, atol=1e-14)
    # without a base the raw tensors are interpolated
    expected_raw = torch.tensor(_slerp_by_hand(th0.flatten().tolist(), th1.flatten().tolist(), t), dtype=torch.float64)
    torch.testing.assert_close(slerp([th0, th1], None, SlerpParams(t=t)), expected_raw.reshape(2, 3), rtol=0, atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_ends_are_exact(dtype):
    base, a, b = (_rand(5, 4, seed=s).to(dtype) for s in range(3))
    for origin in (base, None):
        assert torch.equal(slerp([a, b], origin, SlerpParams(t=0.0)), a)
        assert torch.equal(slerp([a, b], origin, SlerpParams(t=1.0)), b)


@pytest.mark.parametrize("scale", [3.0, -2.0, 1.0])
def test_parallel_and_antiparallel_fall_back_to_lerp(scale):
    base, d = _rand(6, seed=0), _rand(6, seed=1)
    t = 0.4
    out = slerp([base + d, base + scale * d], base, SlerpParams(t=t))
    expected = base + (1 - t) * d + t * scale * d
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-14)
    assert torch.isfinite(out).all()


def test_zero_task_vector_falls_back_to_lerp():
    base, d = _rand(6, seed=0), _rand(6, seed=1)
    out = slerp([base.clone(), base + d], base, SlerpParams(t=0.25))
    torch.testing.assert_close(out, base + 0.25 * d, rtol=0, atol=1e-15)


def test_keeps_norm_of_orthonormal_task_vectors():
    # SLERP stays on the sphere: ‖c0·u0 + c1·u1‖ = 1 for orthonormal u0, u1 at every t
    q, _ = torch.linalg.qr(_rand(10, 2))
    u0, u1 = q[:, 0], q[:, 1]
    for t in (0.1, 0.5, 0.9):
        out = slerp([u0, u1], torch.zeros(10, dtype=torch.float64), SlerpParams(t=t))
        assert torch.linalg.vector_norm(out).item() == pytest.approx(1.0, abs=1e-14)


def test_bf16_and_device_preserved():
    base, a, b = (_rand(16, 16, seed=s, dtype=torch.float32).bfloat16() for s in range(3))
    out = slerp([a, b], base, SlerpParams(t=0.3))
    assert out.dtype == torch.bfloat16 and out.device == a.device
    assert torch.equal(out, slerp([a.float(), b.float()], base.float(), SlerpParams(t=0.3)).bfloat16())


def test_bad_inputs_raise():
    a = _rand(3)
    with pytest.raises(ValueError, match="expected 2"):
        slerp([a, a, a], None, SlerpParams())
    with pytest.raises(ValueError, match="t must be"):
        SlerpParams(t=1.5)
