"""reverse_kl, forward_kl and the sampled KL estimators k1, k2, k3, importance-weighted k3."""

import math

import pytest
import torch

from alignrl.divergences import KL_ESTIMATORS
from alignrl.divergences.kl import (
    ForwardKLParams,
    JeffreysParams,
    KLEstimatorParams,
    ReverseKLParams,
    forward_kl,
    jeffreys,
    kl_importance_weighted,
    kl_k1,
    kl_k2,
    kl_k3,
    reverse_kl,
)

EST = KLEstimatorParams()
# p = (1/2, 1/2), q = (1/4, 3/4) as logits (log-probs are valid logits)
P_HAND = torch.tensor([[math.log(0.5), math.log(0.5)]], dtype=torch.float64)
Q_HAND = torch.tensor([[math.log(0.25), math.log(0.75)]], dtype=torch.float64)


def brute_kl(a, b):
    return sum(ai * math.log(ai / bi) for ai, bi in zip(a, b))


def test_hand_worked_values():
    # KL(p‖q) = ½·log(½/¼) + ½·log(½/¾) = ½·log 2 + ½·log(2/3) = ½·log(4/3) = 0.14384103622589045
    assert reverse_kl.full(P_HAND, Q_HAND, ReverseKLParams()).item() == pytest.approx(0.5 * math.log(4 / 3), abs=1e-15)
    # KL(q‖p) = ¼·log(¼/½) + ¾·log(¾/½) = −¼·log 2 + ¾·log 1.5 = −0.1732867951 + 0.3040988311 = 0.1308120359
    assert forward_kl.full(P_HAND, Q_HAND, ForwardKLParams()).item() == pytest.approx(
        -0.25 * math.log(2) + 0.75 * math.log(1.5), abs=1e-15
    )
    assert forward_kl.full(P_HAND, Q_HAND, ForwardKLParams()).item() == pytest.approx(0.1308120359, abs=1e-10)
    # Jeffreys = Σ (p − q)·log(p/q) = ¼·log 2 − ¼·log(2/3) = ¼·log 3 = 0.2746531 (= 0.1438410 + 0.1308120)
    assert jeffreys.full(P_HAND, Q_HAND, JeffreysParams()).item() == pytest.approx(0.25 * math.log(3), abs=1e-15)


def test_matches_brute_force_loops():
    torch.manual_seed(0)
    zp, zq = 2 * torch.randn(3, 4, 6, dtype=torch.float64), 2 * torch.randn(3, 4, 6, dtype=torch.float64)
    rkl, fkl = reverse_kl.full(zp, zq, ReverseKLParams()), forward_kl.full(zp, zq, ForwardKLParams())
    torch.testing.assert_close(jeffreys.full(zp, zq, JeffreysParams()), rkl + fkl, rtol=1e-13, atol=0)
    for b in range(3):
        for t in range(4):
            p, q = torch.softmax(zp[b, t], -1).tolist(), torch.softmax(zq[b, t], -1).tolist()
            assert rkl[b, t].item() == pytest.approx(brute_kl(p, q), abs=1e-13)
            assert fkl[b, t].item() == pytest.approx(brute_kl(q, p), abs=1e-13)


def test_estimator_hand_values():
    # ℓ = log π − log π_ref = log(½) − log(¼) = log 2 = 0.693147; r = π_ref/π = ½
    logp, logp_ref = torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)])
    assert kl_k1(logp, logp_ref, None, EST).item() == pytest.approx(math.log(2), abs=1e-7)  # −log r
    assert kl_k2(logp, logp_ref, None, EST).item() == pytest.approx(0.5 * math.log(2) ** 2, abs=1e-7)  # 0.240227
    assert kl_k3(logp, logp_ref, None, EST).item() == pytest.approx(-0.5 + math.log(2), abs=1e-7)  # (r−1) − log r = 0.193147
    assert kl_k1(logp, logp_ref, None, EST).dtype == torch.float32
    assert kl_k3(logp.bfloat16(), logp_ref.bfloat16(), None, EST).dtype == torch.float32
    # with a behaviour policy μ(y) = ¼: w = π/μ = 2, so every estimate doubles
    log_mu = torch.tensor([math.log(0.25)])
    assert kl_importance_weighted(logp, logp_ref, log_mu, EST).item() == pytest.approx(2 * (math.log(2) - 0.5), abs=1e-6)


def test_k3_is_nonnegative_and_clamped():
    torch.manual_seed(1)
    logp, logp_ref = 10 * torch.randn(1000, dtype=torch.float64), 10 * torch.randn(1000, dtype=torch.float64)
    assert (kl_k3(logp, logp_ref, None, EST) >= 0).all()
    extreme = kl_k3(torch.tensor([0.0, -1000.0]), torch.tensor([-1000.0, 0.0]), None, EST)
    # log r clamped to ∓20: e^{−20} − 1 + 20 and e^{20} − 1 − 20
    torch.testing.assert_close(extreme, torch.tensor([math.exp(-20) + 19, math.exp(20) - 21]), rtol=1e-6, atol=0)


def _vocab(seed, v=6):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(v, dtype=torch.float64, generator=g).requires_grad_()
    logp_ref = torch.log_softmax(torch.randn(v, dtype=torch.float64, generator=g), -1)
    return z, logp_ref


@pytest.mark.parametrize("est", [kl_k1, kl_k3])
def test_k1_k3_are_unbiased_under_pi_exactly_and_by_monte_carlo(est):
    z, logp_ref = _vocab(2)
    logp = torch.log_softmax(z, -1).detach()
    exact_kl = (logp.exp() * (logp - logp_ref)).sum()
    k = est(logp, logp_ref, None, EST)  # the estimate at every vocabulary entry
    torch.testing.assert_close((logp.exp() * k).sum(), exact_kl, rtol=0, atol=1e-14)  # Σ_y π(y)·k(y) = KL
    # Monte Carlo: 200k draws y ∼ π, seed 0; tolerance 5 standard errors (variance by enumeration)
    n = 200_000
    y = torch.multinomial(logp.exp(), n, replacement=True, generator=torch.Generator().manual_seed(0))
    std_err = math.sqrt(((logp.exp() * (k - exact_kl) ** 2).sum() / n).item())
    assert abs(k[y].mean().item() - exact_kl.item()) < 5 * std_err


def test_k2_is_biased_but_close():
    z, logp_ref = _vocab(3)
    logp = torch.log_softmax(z, -1).detach()
    exact_kl = (logp.exp() * (logp - logp_ref)).sum().item()
    e_k2 = (logp.exp() * kl_k2(logp, logp_ref, None, EST)).sum().item()
    assert e_k2 != pytest.approx(exact_kl, abs=1e-3)
    # near π_ref the bias is third order in the log-ratio
    logp_near = torch.log_softmax(logp_ref + 0.01 * torch.randn(6, dtype=torch.float64), -1)
    kl_near = (logp_near.exp() * (logp_near - logp_ref)).sum().item()
    e_k2_near = (logp_near.exp() * kl_k2(logp_near, logp_ref, None, EST)).sum().item()
    assert abs(e_k2_near - kl_near) < 1e-3 * kl_near


def _grad(loss, z):
    return torch.autograd.grad(loss, z, retain_graph=True)[0]


def test_loss_gradients_by_exact_enumeration():
    """Expected loss Σ_y sg(μ(y))·k(y) over the vocabulary: which KL gradient each estimator carries."""
    z, logp_ref = _vocab(4)
    logp = torch.log_softmax(z, -1)
    pi = logp.exp().detach()
    grad_rkl = _grad((logp.exp() * (logp - logp_ref)).sum(), z)  # ∇KL(π‖π_ref)
    grad_fkl = _grad((logp_ref.exp() * (logp_ref - logp)).sum(), z)  # ∇KL(π_ref‖π)
    assert grad_rkl.abs().max() > 1e-2 and (grad_rkl - grad_fkl).abs().max() > 1e-2
    close = dict(rtol=0, atol=1e-14)
    torch.testing.assert_close(_grad((pi * kl_k1(logp, logp_ref, None, EST)).sum(), z), torch.zeros(6, dtype=torch.float64), **close)
    torch.testing.assert_close(_grad((pi * kl_k2(logp, logp_ref, None, EST)).sum(), z), grad_rkl, **close)
    torch.testing.assert_close(_grad((pi * kl_k3(logp, logp_ref, None, EST)).sum(), z), grad_fkl, **close)
    for est in (kl_k1, kl_k3, kl_importance_weighted):  # w = π/sg(π): value unchanged, score term restored
        torch.testing.assert_close(_grad((pi * est(logp, logp_ref, logp.detach(), EST)).sum(), z), grad_rkl, **close)


def test_importance_weighted_is_unbiased_off_policy():
    z, logp_ref = _vocab(5)
    logp = torch.log_softmax(z, -1)
    log_mu = torch.log_softmax(torch.randn(6, dtype=torch.float64, generator=torch.Generator().manual_seed(9)), -1)
    kl_value = (logp.exp() * (logp - logp_ref)).sum()
    estimate = kl_importance_weighted(logp, logp_ref, log_mu, EST)
    expected = (log_mu.exp() * estimate).sum()  # E_{y∼μ}[w·k3] by enumeration
    torch.testing.assert_close(expected, kl_value, rtol=0, atol=1e-14)
    torch.testing.assert_close(_grad(expected, z), _grad(kl_value, z), rtol=0, atol=1e-14)
    # Monte Carlo with 200k draws y ∼ μ, seed 0, within 5 standard errors
    n, e = 200_000, estimate.detach()
    y = torch.multinomial(log_mu.exp(), n, replacement=True, generator=torch.Generator().manual_seed(0))
    std_err = math.sqrt(((log_mu.exp() * (e - kl_value.detach()) ** 2).sum() / n).item())
    assert abs(e[y].mean().item() - kl_value.item()) < 5 * std_err
    # plain k3 on μ-samples is biased
    assert abs((log_mu.exp() * kl_k3(logp, logp_ref, None, EST)).sum().item() - kl_value.item()) > 1e-2
    with pytest.raises(ValueError, match="logp_behavior"):
        kl_importance_weighted(logp, logp_ref, None, EST)


def test_estimators_registry_uniform_signature():
    logp, logp_ref = torch.log(torch.tensor([[0.5, 0.2]])), torch.log(torch.tensor([[0.25, 0.4]]))
    for name in KL_ESTIMATORS.names():
        out = KL_ESTIMATORS.get(name)(logp, logp_ref, logp.detach(), KL_ESTIMATORS.entry(name).params())
        assert out.shape == (1, 2)


def test_sampled_generators():
    log_u = torch.linspace(-3, 3, 13, dtype=torch.float64)
    u = log_u.exp()
    f, fp = reverse_kl(log_u, ReverseKLParams())
    torch.testing.assert_close(f, u * torch.log(u), rtol=0, atol=1e-14)
    torch.testing.assert_close(fp, torch.log(u) + 1, rtol=0, atol=1e-14)
    f, fp = forward_kl(log_u, ForwardKLParams())
    torch.testing.assert_close(f, -torch.log(u), rtol=0, atol=1e-14)
    torch.testing.assert_close(fp, -1 / u, rtol=0, atol=1e-14)
    # on policy samples f(u)/u of reverse KL is k1 = log u
    torch.testing.assert_close(reverse_kl(log_u, ReverseKLParams())[0] / u, log_u, rtol=0, atol=1e-14)
