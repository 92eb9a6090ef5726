"""Sampled forms of every f-divergence: (f, f′) consistent with each other and with the full form."""

import math

import pytest
import torch

import alignrl.divergences  # noqa: F401  (registers)
from alignrl.registry import DIVERGENCES

F_DIVERGENCES = [n for n in DIVERGENCES.names() if DIVERGENCES.get(n).has_sampled]
VARIANTS = [  # (name, params) with non-default knobs too
    *[(n, {}) for n in F_DIVERGENCES if n != "f_divergence"],
    ("generalized_jsd", {"beta": 0.2}), ("alpha", {"alpha": 0.0}), ("alpha", {"alpha": 1.0}),
    ("alpha", {"alpha": -0.5}), ("alpha", {"alpha": 2.5}), ("alpha", {"alpha": 0.3}), ("tsallis", {"q": 1.0}),
    ("tsallis", {"q": 0.5}), ("skew_kl", {"alpha": 0.0}), ("skew_reverse_kl", {"alpha": 0.0}),
    ("skew_kl", {"alpha": 0.5}), ("skew_reverse_kl", {"alpha": 0.5}),
    ("f_divergence", {"f": lambda u: (u - 1) ** 2, "f_prime": lambda u: 2 * (u - 1)}),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items() if not callable(v))}" for n, kw in VARIANTS]


def make(name, kw):
    return DIVERGENCES.get(name), DIVERGENCES.entry(name).params(**kw)


def test_every_f_divergence_is_covered():
    assert {n for n, _ in VARIANTS} == set(F_DIVERGENCES)


@pytest.mark.parametrize(("name", "kw"), VARIANTS, ids=IDS)
def test_generator_is_zero_at_one_and_convex(name, kw):
    d, p = make(name, kw)
    f, _ = d(torch.zeros(3, dtype=torch.float64), p)
    torch.testing.assert_close(f, torch.zeros(3, dtype=torch.float64), rtol=0, atol=1e-15)
    u = torch.linspace(0.05, 6.0, 200, dtype=torch.float64)
    f, _ = d(u.log(), p)
    assert (f[:-2] - 2 * f[1:-1] + f[2:] >= -1e-12).all()  # second differences of a convex f


@pytest.mark.parametrize(("name", "kw"), VARIANTS, ids=IDS)
def test_autograd_of_f_is_u_times_f_prime(name, kw):
    """d f(u)/d log u = u·f′(u) (f and f′ agree); checked away from TV's kink at u = 1."""
    d, p = make(name, kw)
    log_u = torch.linspace(-5.0, 5.0, 41, dtype=torch.float64)
    log_u = log_u[log_u.abs() > 1e-3].requires_grad_()
    f, f_prime = d(log_u, p)
    (grad,) = torch.autograd.grad(f.sum(), log_u)
    torch.testing.assert_close(grad, log_u.detach().exp() * f_prime.detach(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("name", "kw"), VARIANTS, ids=IDS)
def test_expectations_by_enumeration_equal_the_full_form(name, kw):
    """Σ_v q·f(u) = D(p‖q) (samples from the anchor) and Σ_v p·f(u)/u = D(p‖q) (samples from the policy)."""
    torch.manual_seed(0)
    d, p = make(name, kw)
    logp = torch.log_softmax(2 * torch.randn(4, 7, dtype=torch.float64), -1)
    logq = torch.log_softmax(2 * torch.randn(4, 7, dtype=torch.float64), -1)
    full = d.dense(logp, logq, p)
    f, _ = d(logp - logq, p)
    torch.testing.assert_close((logq.exp() * f).sum(-1), full, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close((logp.exp() * f * torch.exp(logq - logp)).sum(-1), full, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize(("name", "kw"), VARIANTS, ids=IDS)
def test_monte_carlo_means_match_the_full_form(name, kw):
    """100k draws per row from π_ref (mean f(u)) and from π (mean f(u)/u), seed 0: each within 5 standard
    errors of D(π‖π_ref), the standard error from the exact variance by enumeration."""
    d, p = make(name, kw)
    g = torch.Generator().manual_seed(1)
    logp = torch.log_softmax(torch.randn(3, 6, dtype=torch.float64, generator=g), -1)
    logq = torch.log_softmax(torch.randn(3, 6, dtype=torch.float64, generator=g), -1)
    full = d.dense(logp, logq, p)
    f, _ = d(logp - logq, p)
    n = 100_000
    for log_sampler, values in ((logq, f), (logp, f * torch.exp(logq - logp))):
        probs = log_sampler.exp()
        y = torch.multinomial(probs, n, replacement=True, generator=torch.Generator().manual_seed(0))
        mean = values.gather(-1, y).mean(-1)
        std_err = ((probs * (values - full[:, None]) ** 2).sum(-1) / n).sqrt()
        assert ((mean - full).abs() <= 5 * std_err + 1e-15).all(), (mean, full, std_err)


@pytest.mark.parametrize("name", F_DIVERGENCES)
def test_extreme_log_ratios_stay_finite(name):
    d, p = make(name, dict(VARIANTS)[name] if name == "f_divergence" else {})
    f, fp = d(torch.tensor([-1e4, -50.0, 50.0, 1e4]), p)
    assert torch.isfinite(f).all() and torch.isfinite(fp).all()
    assert math.isfinite(p.log_ratio_clamp)
