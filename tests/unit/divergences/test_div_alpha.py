"""α-divergence: hand values, brute force, limits α → 0, 1 and the special points ½, 2."""

import math

import pytest
import torch

from alignrl.divergences.alpha import AlphaParams, alpha
from alignrl.divergences.chi2 import Chi2Params, chi2
from alignrl.divergences.hellinger import HellingerParams, hellinger
from alignrl.divergences.kl import ForwardKLParams, ReverseKLParams, forward_kl, reverse_kl

ZP = torch.log(torch.tensor([0.5, 0.5], dtype=torch.float64))  # p = (½, ½)
ZQ = torch.log(torch.tensor([0.25, 0.75], dtype=torch.float64))  # q = (¼, ¾)


def brute_alpha(p, q, a):
    return (1 - sum(pi**a * qi ** (1 - a) for pi, qi in zip(p, q))) / (a * (1 - a))


def test_hand_worked_values():
    # α = ½: Σ √(p·q) = √(1/8) + √(3/8) = 0.3535534 + 0.6123724 = 0.9659258; D = 4·(1 − 0.9659258) = 0.1362967
    assert alpha.full(ZP, ZQ, AlphaParams(alpha=0.5)).item() == pytest.approx(4 * (1 - math.sqrt(1 / 8) - math.sqrt(3 / 8)), abs=1e-15)
    assert alpha.full(ZP, ZQ, AlphaParams(alpha=0.5)).item() == pytest.approx(0.1362967, abs=1e-7)
    # α = 2: Σ p²/q = ¼/¼ + ¼/¾ = 4/3; D = (1 − 4/3)/(2·(−1)) = 1/6 (= ½·χ², χ² = 1/3)
    assert alpha.full(ZP, ZQ, AlphaParams(alpha=2.0)).item() == pytest.approx(1 / 6, abs=1e-15)
    # α = −1: Σ p^{−1}·q² = (1/16)/(1/2) + (9/16)/(1/2) = 5/4; D = (1 − 5/4)/(−1·2) = 1/8 (= ½·χ²(q‖p))
    assert alpha.full(ZP, ZQ, AlphaParams(alpha=-1.0)).item() == pytest.approx(1 / 8, abs=1e-15)


@pytest.mark.parametrize("a", [-1.5, -0.2, 0.1, 0.3, 0.5, 0.7, 0.999, 1.6, 3.0])
def test_matches_brute_force_loops(a):
    torch.manual_seed(0)
    zp, zq = 2 * torch.randn(3, 6, dtype=torch.float64), 2 * torch.randn(3, 6, dtype=torch.float64)
    out = alpha.full(zp, zq, AlphaParams(alpha=a))
    for r in range(3):
        p, q = torch.softmax(zp[r], -1).tolist(), torch.softmax(zq[r], -1).tolist()
        assert out[r].item() == pytest.approx(brute_alpha(p, q, a), rel=1e-11, abs=1e-13)


def test_limits_are_the_two_kls():
    torch.manual_seed(1)
    zp, zq = 2 * torch.randn(5, 8, dtype=torch.float64), 2 * torch.randn(5, 8, dtype=torch.float64)
    rkl, fkl = reverse_kl.full(zp, zq, ReverseKLParams()), forward_kl.full(zp, zq, ForwardKLParams())
    # exact at the endpoints
    torch.testing.assert_close(alpha.full(zp, zq, AlphaParams(alpha=1.0)), rkl, rtol=0, atol=1e-15)
    torch.testing.assert_close(alpha.full(zp, zq, AlphaParams(alpha=0.0)), fkl, rtol=0, atol=1e-15)
    # continuous: |D_α − KL| = O(|α − 1|) (here ≈ 1e-6·E[ℓ²]/2 ≲ 1e-5), no cancellation blow-up near the ends
    for eps in (1e-3, 1e-6, 1e-9):
        torch.testing.assert_close(alpha.full(zp, zq, AlphaParams(alpha=1 - eps)), rkl, rtol=0, atol=20 * eps)
        torch.testing.assert_close(alpha.full(zp, zq, AlphaParams(alpha=1 + eps)), rkl, rtol=0, atol=20 * eps)
        torch.testing.assert_close(alpha.full(zp, zq, AlphaParams(alpha=eps)), fkl, rtol=0, atol=20 * eps)


def test_special_points():
    torch.manual_seed(2)
    zp, zq = 2 * torch.randn(5, 8, dtype=torch.float64), 2 * torch.randn(5, 8, dtype=torch.float64)
    torch.testing.assert_close(
        alpha.full(zp, zq, AlphaParams(alpha=0.5)), 4 * hellinger.full(zp, zq, HellingerParams()), rtol=1e-13, atol=0
    )
    torch.testing.assert_close(
        alpha.full(zp, zq, AlphaParams(alpha=2.0)), 0.5 * chi2.full(zp, zq, Chi2Params()), rtol=1e-13, atol=0
    )
    # D_α(p‖q) = D_{1−α}(q‖p)
    torch.testing.assert_close(
        alpha.full(zp, zq, AlphaParams(alpha=0.2)), alpha.full(zq, zp, AlphaParams(alpha=0.8)), rtol=1e-13, atol=0
    )


def test_fp32_precision_near_the_ends():
    """fp32 near α = 1 keeps relative precision (the naive 1 − Σ p^α q^{1−α} over α(1−α) would lose it)."""
    torch.manual_seed(3)
    zp, zq = torch.randn(4, 50), torch.randn(4, 50)
    ref = alpha.full(zp.double(), zq.double(), AlphaParams(alpha=1 - 1e-4))
    torch.testing.assert_close(alpha.full(zp, zq, AlphaParams(alpha=1 - 1e-4)).double(), ref, rtol=1e-5, atol=0)


def test_sampled_generator_closed_forms():
    log_u = torch.linspace(-3, 3, 13, dtype=torch.float64)
    u = log_u.exp()
    for a in (0.3, 0.5, 2.0, -1.0):
        f, fp = alpha(log_u, AlphaParams(alpha=a))
        torch.testing.assert_close(f, (u**a - a * u - (1 - a)) / (a * (a - 1)), rtol=1e-12, atol=1e-13)
        torch.testing.assert_close(fp, (u ** (a - 1) - 1) / (a - 1), rtol=1e-12, atol=1e-13)
    f, fp = alpha(log_u, AlphaParams(alpha=1.0))  # u·log u − u + 1 and log u
    torch.testing.assert_close(f, u * log_u - u + 1, rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(fp, log_u, rtol=0, atol=1e-15)
    f, fp = alpha(log_u, AlphaParams(alpha=0.0))  # −log u + u − 1 and 1 − 1/u
    torch.testing.assert_close(f, -log_u + u - 1, rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(fp, 1 - 1 / u, rtol=1e-13, atol=1e-14)
    with pytest.raises(ValueError):
        AlphaParams(alpha=math.inf)
