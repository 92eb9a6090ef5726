"""Total variation: hand value, brute force, bounds, symmetry."""

import pytest
import torch

from alignrl.divergences.tv import TVParams, tv


def test_hand_worked_value():
    # p = (½, ½), q = (¼, ¾): ½·(|½ − ¼| + |½ − ¾|) = ½·(¼ + ¼) = ¼
    zp, zq = torch.log(torch.tensor([0.5, 0.5], dtype=torch.float64)), torch.log(torch.tensor([0.25, 0.75], dtype=torch.float64))
    assert tv.full(zp, zq, TVParams()).item() == pytest.approx(0.25, abs=1e-15)


def test_matches_brute_force_loops_and_bounds():
    torch.manual_seed(0)
    zp, zq = 3 * torch.randn(4, 7, dtype=torch.float64), 3 * torch.randn(4, 7, dtype=torch.float64)
    out = tv.full(zp, zq, TVParams())
    for r in range(4):
        p, q = torch.softmax(zp[r], -1).tolist(), torch.softmax(zq[r], -1).tolist()
        assert out[r].item() == pytest.approx(0.5 * sum(abs(a - b) for a, b in zip(p, q)), abs=1e-15)
    torch.testing.assert_close(out, tv.full(zq, zp, TVParams()), rtol=0, atol=0)
    assert (out <= 1).all()
    # disjoint supports (numerically): TV → 1
    far = torch.tensor([[60.0, 0.0]], dtype=torch.float64), torch.tensor([[0.0, 60.0]], dtype=torch.float64)
    assert tv.full(*far, TVParams()).item() == pytest.approx(1.0, abs=1e-12)


def test_sampled_generator():
    log_u = torch.tensor([-1.0, 0.0, 2.0], dtype=torch.float64)
    f, fp = tv(log_u, TVParams())
    torch.testing.assert_close(f, 0.5 * (log_u.exp() - 1).abs(), rtol=1e-15, atol=1e-15)
    torch.testing.assert_close(fp, torch.tensor([-0.5, 0.0, 0.5], dtype=torch.float64), rtol=0, atol=0)
