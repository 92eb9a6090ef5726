"""Tsallis relative entropy: hand value, brute force, q → 1 limit, q = 2 is χ², relation to α."""

import pytest
import torch

from alignrl.divergences.alpha import AlphaParams, alpha
from alignrl.divergences.chi2 import Chi2Params, chi2
from alignrl.divergences.kl import ReverseKLParams, reverse_kl
from alignrl.divergences.tsallis import TsallisParams, tsallis


def brute_tsallis(p, r, q):
    """−Σ p·ln_q(r/p), ln_q(x) = (x^{1−q} − 1)/(1 − q)."""
    return -sum(pi * ((ri / pi) ** (1 - q) - 1) / (1 - q) for pi, ri in zip(p, r))


def test_hand_worked_value():
    # p = (½, ½), r = (¼, ¾), q = 2: Σ p²/r − 1 = ¼/¼ + ¼/¾ − 1 = 1/3
    zp, zr = torch.log(torch.tensor([0.5, 0.5], dtype=torch.float64)), torch.log(torch.tensor([0.25, 0.75], dtype=torch.float64))
    assert tsallis.full(zp, zr, TsallisParams(q=2.0)).item() == pytest.approx(1 / 3, abs=1e-15)
    # q = 3: Σ p³/r² − 1 = (1/8)/(1/16) + (1/8)/(9/16) − 1 = 2 + 2/9 − 1 = 11/9; divided by q − 1 = 2: 11/18
    assert tsallis.full(zp, zr, TsallisParams(q=3.0)).item() == pytest.approx(11 / 18, abs=1e-15)


@pytest.mark.parametrize("q", [0.3, 0.9, 1.5, 2.0, 4.0])
def test_matches_brute_force_loops(q):
    torch.manual_seed(0)
    zp, zr = 2 * torch.randn(3, 6, dtype=torch.float64), 2 * torch.randn(3, 6, dtype=torch.float64)
    out = tsallis.full(zp, zr, TsallisParams(q=q))
    for i in range(3):
        p, r = torch.softmax(zp[i], -1).tolist(), torch.softmax(zr[i], -1).tolist()
        assert out[i].item() == pytest.approx(brute_tsallis(p, r, q), rel=1e-12, abs=1e-14)


def test_q_to_one_is_kl_and_relations():
    torch.manual_seed(1)
    zp, zr = 2 * torch.randn(5, 8, dtype=torch.float64), 2 * torch.randn(5, 8, dtype=torch.float64)
    rkl = reverse_kl.full(zp, zr, ReverseKLParams())
    torch.testing.assert_close(tsallis.full(zp, zr, TsallisParams(q=1.0)), rkl, rtol=0, atol=1e-15)
    for eps in (1e-4, 1e-8):
        torch.testing.assert_close(tsallis.full(zp, zr, TsallisParams(q=1 + eps)), rkl, rtol=0, atol=20 * eps)
    torch.testing.assert_close(tsallis.full(zp, zr, TsallisParams(q=2.0)), chi2.full(zp, zr, Chi2Params()), rtol=1e-13, atol=0)
    torch.testing.assert_close(  # D_q = q·D_α at α = q
        tsallis.full(zp, zr, TsallisParams(q=0.7)), 0.7 * alpha.full(zp, zr, AlphaParams(alpha=0.7)), rtol=1e-13, atol=0
    )
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError):
            TsallisParams(q=bad)


def test_sampled_generator_at_q_one_is_reverse_kl():
    log_u = torch.linspace(-3, 3, 13, dtype=torch.float64)
    f1, fp1 = tsallis(log_u, TsallisParams(q=1.0))
    f2, fp2 = reverse_kl(log_u, ReverseKLParams())
    torch.testing.assert_close(f1, f2, rtol=0, atol=1e-15)
    torch.testing.assert_close(fp1, fp2, rtol=0, atol=1e-15)
    u = log_u.exp()
    f, fp = tsallis(log_u, TsallisParams(q=2.5))
    torch.testing.assert_close(f, (u**2.5 - u) / 1.5, rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(fp, (2.5 * u**1.5 - 1) / 1.5, rtol=1e-13, atol=1e-14)
