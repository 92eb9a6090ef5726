"""Skew KL / skew reverse KL: hand value, DistiLLM's definition, α = 0 reductions, bounds."""

import math

import pytest
import torch

from alignrl.divergences.kl import ForwardKLParams, ReverseKLParams, forward_kl, reverse_kl
from alignrl.divergences.skew import SkewKLParams, SkewReverseKLParams, skew_kl, skew_reverse_kl


def distillm_skewed_forward_kl(student, teacher, lam):
    """DistiLLM (arXiv:2402.03898) SKL on probabilities: mixed = λ·teacher + (1−λ)·student; KL(teacher‖mixed)."""
    mixed = [lam * t + (1 - lam) * s for s, t in zip(student, teacher)]
    return sum(t * math.log(t / m) for t, m in zip(teacher, mixed))


def distillm_skewed_reverse_kl(student, teacher, lam):
    """DistiLLM SRKL: mixed = (1−λ)·teacher + λ·student; KL(student‖mixed)."""
    mixed = [(1 - lam) * t + lam * s for s, t in zip(student, teacher)]
    return sum(s * math.log(s / m) for s, m in zip(student, mixed))


def test_hand_worked_value():
    # student p = (½, ½), teacher q = (¼, ¾), α = ½: mixture ½q + ½p = (3/8, 5/8)
    # SKL = KL(q‖M) = ¼·log(2/3) + ¾·log(6/5) = −0.1013663 + 0.1367412 = 0.0353749
    zp, zq = torch.log(torch.tensor([0.5, 0.5], dtype=torch.float64)), torch.log(torch.tensor([0.25, 0.75], dtype=torch.float64))
    out = skew_kl.full(zp, zq, SkewKLParams(alpha=0.5)).item()
    assert out == pytest.approx(0.25 * math.log(2 / 3) + 0.75 * math.log(6 / 5), abs=1e-15)
    assert out == pytest.approx(0.0353749, abs=1e-7)
    # SRKL = KL(p‖M) = ½·log(4/3) + ½·log(4/5) = 0.1438410 − 0.1115718 = 0.0322693
    assert skew_reverse_kl.full(zp, zq, SkewReverseKLParams(alpha=0.5)).item() == pytest.approx(0.0322693, abs=1e-7)


@pytest.mark.parametrize("lam", [0.0, 0.1, 0.5, 0.9])
def test_matches_distillm_definitions(lam):
    torch.manual_seed(0)
    zp, zq = 2 * torch.randn(3, 7, dtype=torch.float64), 2 * torch.randn(3, 7, dtype=torch.float64)
    skl = skew_kl.full(zp, zq, SkewKLParams(alpha=lam))
    srkl = skew_reverse_kl.full(zp, zq, SkewReverseKLParams(alpha=lam))
    for r in range(3):
        student, teacher = torch.softmax(zp[r], -1).tolist(), torch.softmax(zq[r], -1).tolist()
        assert skl[r].item() == pytest.approx(distillm_skewed_forward_kl(student, teacher, lam), abs=1e-14)
        assert srkl[r].item() == pytest.approx(distillm_skewed_reverse_kl(student, teacher, lam), abs=1e-14)
        if lam > 0:
            assert skl[r].item() <= -math.log(lam) and srkl[r].item() <= -math.log(lam)


def test_alpha_zero_is_plain_kl():
    torch.manual_seed(1)
    zp, zq = 2 * torch.randn(4, 6, dtype=torch.float64), 2 * torch.randn(4, 6, dtype=torch.float64)
    torch.testing.assert_close(skew_kl.full(zp, zq, SkewKLParams(alpha=0.0)), forward_kl.full(zp, zq, ForwardKLParams()), rtol=0, atol=0)
    torch.testing.assert_close(
        skew_reverse_kl.full(zp, zq, SkewReverseKLParams(alpha=0.0)), reverse_kl.full(zp, zq, ReverseKLParams()), rtol=0, atol=0
    )
    log_u = torch.linspace(-3, 3, 7, dtype=torch.float64)
    torch.testing.assert_close(skew_kl(log_u, SkewKLParams(alpha=0.0))[1], forward_kl(log_u, ForwardKLParams())[1], rtol=0, atol=1e-15)
    torch.testing.assert_close(
        skew_reverse_kl(log_u, SkewReverseKLParams(alpha=0.0))[1], reverse_kl(log_u, ReverseKLParams())[1], rtol=0, atol=1e-15
    )
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError):
            SkewKLParams(alpha=bad)


def test_gradient_flows_through_the_mixture():
    torch.manual_seed(2)
    zp = torch.randn(5, dtype=torch.float64, requires_grad=True)
    zq = torch.randn(5, dtype=torch.float64)
    skew_kl.full(zp, zq, SkewKLParams(alpha=0.3)).backward()
    teacher = torch.softmax(zq, -1)
    student = torch.softmax(zp, -1)
    ref = (teacher * (teacher.log() - (0.3 * teacher + 0.7 * student).log())).sum()
    (g,) = torch.autograd.grad(ref, zp)
    torch.testing.assert_close(zp.grad, g, rtol=0, atol=1e-15)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("alpha", [0.1, 0.5])
def test_detach_mixture_holds_the_mixture_constant(dtype, alpha):
    """detach_mixture=True: same values (bitwise); gradient = autograd of Σ p·(log p − log M̄) with
    M̄ = sg((1−α)·q + α·p), the teacher's share of the mixture keeping its gradient."""
    g = torch.Generator().manual_seed(3)
    zp0, zq0 = 2 * torch.randn(3, 4, 9, dtype=dtype, generator=g), 2 * torch.randn(3, 4, 9, dtype=dtype, generator=g)
    grads, outs = {}, {}
    for detach in (False, True):
        zp, zq = zp0.clone().requires_grad_(), zq0.clone().requires_grad_()
        out = skew_reverse_kl.full(zp, zq, SkewReverseKLParams(alpha=alpha, detach_mixture=detach, chunk_size=5))
        (out * torch.linspace(0.5, 1.5, out.numel(), dtype=dtype).view_as(out)).sum().backward()
        outs[detach], grads[detach] = out.detach(), (zp.grad, zq.grad)
    torch.testing.assert_close(outs[True], outs[False], rtol=0, atol=0)
    # manual formula, unchunked, with the student's share of the mixture detached
    zp, zq = zp0.clone().requires_grad_(), zq0.clone().requires_grad_()
    student, teacher = torch.softmax(zp, -1), torch.softmax(zq, -1)
    mixed = (1 - alpha) * teacher + alpha * student.detach()
    ref = (student * (torch.log_softmax(zp, -1) - mixed.log())).sum(-1)
    (ref * torch.linspace(0.5, 1.5, ref.numel(), dtype=dtype).view_as(ref)).sum().backward()
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-14}
    torch.testing.assert_close(outs[True], ref.detach(), **tol)
    torch.testing.assert_close(grads[True][0], zp.grad, **tol)
    torch.testing.assert_close(grads[True][1], zq.grad, **tol)
    # and it is a different gradient from the exact one (the −Σ α·p·∇p/M term is dropped)
    assert (grads[True][0] - grads[False][0]).abs().max() > 1e-3
    # analytic: ∂/∂p_v of Σ p·log(p/M̄) is log(p_v/M_v) + 1; through softmax, g_z = p ⊙ (a − Σ p·a)
    p_ = torch.softmax(zp0, -1)
    a = torch.log_softmax(zp0, -1) - ((1 - alpha) * torch.softmax(zq0, -1) + alpha * p_).log() + 1.0
    wts = torch.linspace(0.5, 1.5, ref.numel(), dtype=dtype).view_as(ref).unsqueeze(-1)
    torch.testing.assert_close(grads[True][0], wts * p_ * (a - (p_ * a).sum(-1, keepdim=True)), **tol)


def test_detach_mixture_sampled_form_and_default():
    assert SkewReverseKLParams().detach_mixture is False
    log_u = torch.linspace(-3, 3, 7, dtype=torch.float64, requires_grad=True)
    f0, fp0 = skew_reverse_kl(log_u, SkewReverseKLParams(alpha=0.3))
    f1, fp1 = skew_reverse_kl(log_u, SkewReverseKLParams(alpha=0.3, detach_mixture=True))
    torch.testing.assert_close(f1, f0, rtol=0, atol=0)
    torch.testing.assert_close(fp1, fp0, rtol=0, atol=0)  # f′ is the generator's derivative either way
    (g0,) = torch.autograd.grad(f0.sum(), log_u)
    (g1,) = torch.autograd.grad(f1.sum(), log_u)
    u = log_u.detach().exp()
    m = 0.7 + 0.3 * u
    torch.testing.assert_close(g0, u * fp0.detach(), rtol=1e-12, atol=1e-14)  # d f/d log u = u·f′(u)
    torch.testing.assert_close(g1, u * ((log_u.detach() - m.log()) + 1.0), rtol=1e-12, atol=1e-14)  # m held fixed
