"""AKL: brute force against the authors' head/tail rule, reductions to FKL / RKL, detached weights."""

import math

import pytest
import torch

from alignrl.divergences.akl import HEAD_SLACK_EPS, AKLParams, akl, akl_head_weight
from alignrl.divergences.kl import ForwardKLParams, ReverseKLParams, forward_kl, reverse_kl


def brute_akl(p, q, mu):
    """Loops: sort teacher q descending; head = ranks with cumulative q ≤ μ plus rank 1 (authors' code), the
    comparison made against μ·(total q)·(1 + 16ε) as documented (rounding guard)."""
    order = sorted(range(len(q)), key=lambda i: -q[i])
    total = 0.0
    for i in order:
        total += q[i]
    g_head = g_tail = cum = 0.0
    for rank, i in enumerate(order):
        cum += q[i]
        if rank == 0 or cum <= mu * total * (1 + 16 * 2.0**-52):
            g_head += abs(q[i] - p[i])
        else:
            g_tail += abs(q[i] - p[i])
    fkl = sum(qi * math.log(qi / pi) for pi, qi in zip(p, q))
    rkl = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    return g_head / (g_head + g_tail) * fkl + g_tail / (g_head + g_tail) * rkl


def logs(*probs):
    return torch.log(torch.tensor(probs, dtype=torch.float64))


@pytest.mark.parametrize("mu", [0.0, 0.3, 0.5, 0.8])
def test_matches_brute_force_loops(mu):
    torch.manual_seed(0)
    zp, zq = 2 * torch.randn(4, 9, dtype=torch.float64), 2 * torch.randn(4, 9, dtype=torch.float64)
    out = akl.full(zp, zq, AKLParams(mu=mu))
    for r in range(4):
        p, q = torch.softmax(zp[r], -1).tolist(), torch.softmax(zq[r], -1).tolist()
        assert out[r].item() == pytest.approx(brute_akl(p, q, mu), abs=1e-14)


def test_hand_worked_reductions():
    # teacher q = (0.5, 0.3, 0.1, 0.1), μ = 0.85: cumulative 0.5, 0.8, 0.9, 1.0 → head = ranks 1–2
    q = logs(0.5, 0.3, 0.1, 0.1)
    p_head = logs(0.4, 0.4, 0.1, 0.1)  # gaps only in the head: g_tail = 0 → AKL = KL(q‖p)
    p_tail = logs(0.5, 0.3, 0.15, 0.05)  # gaps only in the tail: g_head = 0 → AKL = KL(p‖q)
    params = AKLParams(mu=0.85)
    assert akl.full(p_head, q, params).item() == pytest.approx(forward_kl.full(p_head, q, ForwardKLParams()).item(), abs=1e-15)
    assert akl.full(p_tail, q, params).item() == pytest.approx(reverse_kl.full(p_tail, q, ReverseKLParams()).item(), abs=1e-15)
    # mixed: p = (0.4, 0.3, 0.2, 0.1): g_head = 0.1, g_tail = 0.1 → w = ½
    # FKL = 0.5·log(5/4) + 0.1·log(1/2) = 0.1115718 − 0.0693147 = 0.0422571
    # RKL = 0.4·log(4/5) + 0.2·log 2 = −0.0892574 + 0.1386294 = 0.0493720;  AKL = ½·(0.0422571 + 0.0493720) = 0.0458146
    p_mix = logs(0.4, 0.3, 0.2, 0.1)
    assert akl_head_weight(p_mix, q, 0.85).item() == pytest.approx(0.5, abs=1e-15)
    assert akl.full(p_mix, q, params).item() == pytest.approx(0.0458146, abs=1e-7)


def test_weights_are_detached_and_equal_inputs_give_zero():
    torch.manual_seed(1)
    zp = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    zq = torch.randn(3, 6, dtype=torch.float64)
    akl.full(zp, zq, AKLParams()).sum().backward()
    lp, lq = torch.log_softmax(zp, -1), torch.log_softmax(zq, -1)
    w = akl_head_weight(lp, lq, 0.5)
    ref = (w * forward_kl.dense(lp, lq, None) + (1 - w) * reverse_kl.dense(lp, lq, None)).sum()
    (g,) = torch.autograd.grad(ref, zp)
    torch.testing.assert_close(zp.grad, g, rtol=0, atol=1e-15)
    assert akl_head_weight(lq, lq, 0.5).eq(0.5).all()  # 0/0 gaps → ½, and both KLs are 0
    with pytest.raises(ValueError):
        AKLParams(mu=1.5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mu_one_is_forward_kl_exactly(dtype):
    """μ = 1: every token in the head, w = 1, AKL = 1·KL(q‖p) + 0·KL(p‖q) = forward_kl bit for bit (values and
    gradients). The released ``cumsum <= mu`` rule loses the last ranks on rows whose float cumsum overshoots 1."""
    for seed, (b, t, v) in enumerate([(2, 8, 40), (1, 8, 500)]):
        g = torch.Generator().manual_seed(seed)
        zp0, zq0 = 3 * torch.randn(b, t, v, dtype=dtype, generator=g), 3 * torch.randn(b, t, v, dtype=dtype, generator=g)
        zp, zp_ref = zp0.clone().requires_grad_(), zp0.clone().requires_grad_()
        out = akl.full(zp, zq0, AKLParams(mu=1.0, chunk_size=8))
        ref = forward_kl.full(zp_ref, zq0, ForwardKLParams(chunk_size=8))
        torch.testing.assert_close(out, ref, rtol=0, atol=0)
        out.sum().backward()
        ref.sum().backward()
        torch.testing.assert_close(zp.grad, zp_ref.grad, rtol=0, atol=0)
        w = akl_head_weight(torch.log_softmax(zp0, -1), torch.log_softmax(zq0, -1), 1.0)
        assert w.dtype == dtype and (w == 1).all()
    assert akl_head_weight(torch.zeros(3, 4, dtype=dtype), torch.zeros(3, 4, dtype=dtype), 1.0).eq(0.5).all()


def test_cumulative_mass_within_rounding_of_mu_reaches_it():
    # uniform teacher over 5 tokens in fp64: q = 0.2 each, the float cumsum is 0.2, 0.4, 0.6000000000000001, ...
    # μ = 0.6 is reached exactly at rank 3 → head = ranks 1–3 (stable sort: indices 0, 1, 2)
    lq = torch.log_softmax(torch.zeros(5, dtype=torch.float64), -1)
    assert lq.exp().cumsum(-1)[2].item() > 0.6  # the overshoot the slack absorbs
    p = logs(0.2, 0.2, 0.3, 0.15, 0.15)  # gaps 0, 0, 0.1 | 0.05, 0.05 → g_head = g_tail = 0.1
    assert akl_head_weight(p, lq, 0.6).item() == pytest.approx(0.5, abs=1e-14)
    # the slack is relative and tiny: a μ one part in 1e-12 below the cumulative mass does not reach it
    assert akl_head_weight(p, lq, 0.6 * (1 - 1e-12)).item() == 0.0
    assert HEAD_SLACK_EPS * torch.finfo(torch.float64).eps < 1e-12
