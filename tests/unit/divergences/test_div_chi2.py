"""Pearson χ²: hand value, brute force, the clamp guard."""

import math

import pytest
import torch

from alignrl.divergences.chi2 import Chi2Params, chi2


def test_hand_worked_value():
    # p = (½, ½), q = (¼, ¾): (½ − ¼)²/¼ + (½ − ¾)²/¾ = ¼ + 1/12 = 1/3
    zp, zq = torch.log(torch.tensor([0.5, 0.5], dtype=torch.float64)), torch.log(torch.tensor([0.25, 0.75], dtype=torch.float64))
    assert chi2.full(zp, zq, Chi2Params()).item() == pytest.approx(1 / 3, abs=1e-15)


def test_matches_brute_force_loops():
    torch.manual_seed(0)
    zp, zq = 2 * torch.randn(4, 7, dtype=torch.float64), 2 * torch.randn(4, 7, dtype=torch.float64)
    out = chi2.full(zp, zq, Chi2Params())
    for r in range(4):
        p, q = torch.softmax(zp[r], -1).tolist(), torch.softmax(zq[r], -1).tolist()
        assert out[r].item() == pytest.approx(sum((a - b) ** 2 / b for a, b in zip(p, q)), rel=1e-13)


def test_clamp_bounds_extreme_ratios_and_can_be_disabled():
    # q(v₀) = e^{−200}/(1 + e^{−200}) with p(v₀) = ½: the true χ² ≈ ¼·e^{200} overflows fp32 and is huge in fp64
    zp = torch.tensor([0.0, 0.0], dtype=torch.float64)
    zq = torch.tensor([-200.0, 0.0], dtype=torch.float64)
    guarded = chi2.full(zp.float(), zq.float(), Chi2Params()).item()
    assert math.isfinite(guarded) and guarded < math.exp(2 * 20)
    exact = chi2.full(zp, zq, Chi2Params(log_ratio_clamp=math.inf)).item()
    assert exact == pytest.approx(0.25 * math.exp(200), rel=1e-12)
