"""The generic f-divergence reproduces the named ones from their generators."""

import torch

from alignrl.divergences.chi2 import Chi2Params, chi2
from alignrl.divergences.generic import FDivergenceParams, f_divergence
from alignrl.divergences.js import JSParams, js
from alignrl.divergences.kl import ReverseKLParams, reverse_kl


def test_generic_equals_named_divergences():
    torch.manual_seed(0)
    zp, zq = 2 * torch.randn(3, 4, 7, dtype=torch.float64), 2 * torch.randn(3, 4, 7, dtype=torch.float64)
    rkl = FDivergenceParams(f=lambda u: u * torch.log(u), f_prime=lambda u: torch.log(u) + 1)
    jsp = FDivergenceParams(
        f=lambda u: 0.5 * (u * torch.log(u) - (u + 1) * torch.log((u + 1) / 2)),
        f_prime=lambda u: 0.5 * torch.log(2 * u / (u + 1)),
    )
    pearson = FDivergenceParams(f=lambda u: (u - 1) ** 2, f_prime=lambda u: 2 * (u - 1))
    torch.testing.assert_close(f_divergence.full(zp, zq, rkl), reverse_kl.full(zp, zq, ReverseKLParams()), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(f_divergence.full(zp, zq, jsp), js.full(zp, zq, JSParams()), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(f_divergence.full(zp, zq, pearson), chi2.full(zp, zq, Chi2Params()), rtol=1e-12, atol=1e-14)
    log_u = torch.linspace(-2, 2, 9, dtype=torch.float64)
    for (a, b) in zip(f_divergence(log_u, jsp), js(log_u, JSParams())):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-15)


def test_generic_needs_callables():
    import pytest

    with pytest.raises(TypeError):
        FDivergenceParams(f=1.0, f_prime=lambda u: u)
