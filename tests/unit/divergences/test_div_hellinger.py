"""Squared Hellinger: hand value, brute force, bounds, relation to α = ½."""

import math

import pytest
import torch

from alignrl.divergences.hellinger import HellingerParams, hellinger


def test_hand_worked_value():
    # p = (½, ½), q = (¼, ¾): 1 − Σ √(p·q) = 1 − (√(1/8) + √(3/8)) = 1 − 0.9659258 = 0.0340742
    zp, zq = torch.log(torch.tensor([0.5, 0.5], dtype=torch.float64)), torch.log(torch.tensor([0.25, 0.75], dtype=torch.float64))
    out = hellinger.full(zp, zq, HellingerParams()).item()
    assert out == pytest.approx(1 - math.sqrt(1 / 8) - math.sqrt(3 / 8), abs=1e-15)
    assert out == pytest.approx(0.0340742, abs=1e-7)


def test_matches_brute_force_loops_and_bounds():
    torch.manual_seed(0)
    zp, zq = 3 * torch.randn(4, 7, dtype=torch.float64), 3 * torch.randn(4, 7, dtype=torch.float64)
    out = hellinger.full(zp, zq, HellingerParams())
    for r in range(4):
        p, q = torch.softmax(zp[r], -1).tolist(), torch.softmax(zq[r], -1).tolist()
        assert out[r].item() == pytest.approx(0.5 * sum((math.sqrt(a) - math.sqrt(b)) ** 2 for a, b in zip(p, q)), abs=1e-15)
    torch.testing.assert_close(out, hellinger.full(zq, zp, HellingerParams()), rtol=0, atol=1e-16)
    assert (out <= 1).all()


def test_sampled_generator():
    log_u = torch.linspace(-3, 3, 7, dtype=torch.float64)
    u = log_u.exp()
    f, fp = hellinger(log_u, HellingerParams())
    torch.testing.assert_close(f, 0.5 * (u.sqrt() - 1) ** 2, rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(fp, 0.5 * (1 - 1 / u.sqrt()), rtol=1e-14, atol=1e-15)
