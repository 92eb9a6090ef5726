"""anchor_term: the per-token anchor estimators and the coefficient schedule.

Exactness by enumeration: for one categorical "token" over V outcomes, the expectation over y ∼ π of the
f_sampled value is D_f(π‖q), and the expectation of its surrogate has gradient ∇_θ D_f(π‖q), both computed
exactly by summing over the V outcomes with weights π_v (float64, tolerance 1e-10).
"""

import math

import pytest
import torch

import alignrl.divergences  # noqa: F401
from alignrl.objectives.anchor_term import CoefSchedule, anchor_token_terms, coef_at
from alignrl.registry import DIVERGENCES

F_DIVERGENCES = ["reverse_kl", "forward_kl", "js", "tv", "chi2", "hellinger", "alpha"]


def _enumerate(divergence: str, seed: int = 0, v: int = 7):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(v, generator=g, dtype=torch.float64, requires_grad=True)
    logq = torch.log_softmax(torch.randn(v, generator=g, dtype=torch.float64), -1)
    logp = torch.log_softmax(z, -1)
    value, surrogate = anchor_token_terms(logp, logq, divergence=divergence, estimator="f_sampled")
    weights = logp.detach().exp()
    return z, logp, logq, (weights * value).sum(), (weights * surrogate).sum()


@pytest.mark.parametrize("divergence", F_DIVERGENCES)
def test_f_sampled_value_is_unbiased(divergence):
    _, logp, logq, expected_value, _ = _enumerate(divergence)
    entry = DIVERGENCES.entry(divergence)
    exact = entry.fn.dense(logp.detach(), logq, entry.params())
    assert torch.allclose(expected_value, exact, atol=1e-10, rtol=0)


@pytest.mark.parametrize("divergence", F_DIVERGENCES)
def test_f_sampled_surrogate_gradient_is_the_divergence_gradient(divergence):
    z, logp, logq, _, expected_surrogate = _enumerate(divergence, seed=3)
    (grad_estimate,) = torch.autograd.grad(expected_surrogate, z)
    entry = DIVERGENCES.entry(divergence)
    (grad_exact,) = torch.autograd.grad(entry.fn.dense(torch.log_softmax(z, -1), logq, entry.params()), z)
    assert torch.allclose(grad_estimate, grad_exact, atol=1e-10, rtol=0)


def test_k_estimators_match_the_kl_registry_and_reject_other_divergences():
    logp = torch.tensor([[-1.0, -2.0]], dtype=torch.float64, requires_grad=True)
    logq = torch.tensor([[-1.5, -1.0]], dtype=torch.float64)
    value, surrogate = anchor_token_terms(logp, logq, divergence="reverse_kl", estimator="k3")
    log_r = logq - logp.detach()
    assert torch.allclose(value, log_r.exp() - 1 - log_r, atol=1e-12)
    assert surrogate.requires_grad and not value.requires_grad
    value2, _ = anchor_token_terms(logp, logq, divergence="reverse_kl", estimator="k2")
    assert torch.allclose(value2, 0.5 * log_r.square(), atol=1e-12)
    with pytest.raises(ValueError, match="reverse_kl only"):
        anchor_token_terms(logp, logq, divergence="js", estimator="k3")


def test_anchor_equal_to_policy_gives_zero_value_and_zero_gradient():
    logp = torch.log_softmax(torch.randn(3, 5, dtype=torch.float64), -1).requires_grad_(True)
    for divergence in F_DIVERGENCES:
        value, surrogate = anchor_token_terms(logp, logp.detach(), divergence=divergence, estimator="f_sampled")
        assert torch.allclose(value, torch.zeros_like(value), atol=1e-12), divergence
        (g,) = torch.autograd.grad(surrogate.sum(), logp)
        assert torch.allclose(g, torch.zeros_like(g), atol=1e-12), divergence


@pytest.mark.parametrize(("schedule", "mid"), [("constant", 0.1), ("linear", 0.055), ("cosine", 0.055)])
def test_coef_schedules_hit_their_ends(schedule, mid):
    s = CoefSchedule(start=0.1, end=0.01, schedule=schedule)
    assert coef_at(0, s, 100) == pytest.approx(0.1)
    assert coef_at(50, s, 100) == pytest.approx(mid)
    assert coef_at(100, s, 100) == pytest.approx(0.1 if schedule == "constant" else 0.01)
    assert coef_at(500, s, 100) == pytest.approx(0.1 if schedule == "constant" else 0.01)


def test_cosine_schedule_is_a_half_cosine_and_steps_override_the_run_length():
    s = CoefSchedule(start=1.0, end=0.0, schedule="cosine", steps=10)
    assert coef_at(2, s, 1000) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.2)))
    assert coef_at(10, s, 1000) == pytest.approx(0.0)


def test_schedule_rejects_negative_coefficients_and_unknown_shapes():
    with pytest.raises(ValueError, match="start/end"):
        CoefSchedule(start=-1.0)
    with pytest.raises(ValueError, match="schedule"):
        CoefSchedule(start=1.0, schedule="exp")  # type: ignore[arg-type]


def test_adaptive_coefficient_moves_towards_the_target_by_at_most_20_percent_of_n_over_h():
    from alignrl.objectives.anchor_term import adaptive_coef

    assert adaptive_coef(0.1, measured=0.2, target=0.1, horizon=100, n_samples=100) == pytest.approx(0.12)  # capped +20%
    assert adaptive_coef(0.1, measured=0.05, target=0.1, horizon=100, n_samples=100) == pytest.approx(0.08)  # −20% cap
    assert adaptive_coef(0.1, measured=0.11, target=0.1, horizon=1000, n_samples=100) == pytest.approx(0.1 * 1.01)
    assert adaptive_coef(0.1, measured=0.1, target=0.1, horizon=10, n_samples=5) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="target"):
        CoefSchedule(start=0.1, schedule="adaptive")
