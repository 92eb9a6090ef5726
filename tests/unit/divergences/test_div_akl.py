"""AKL: brute force against the authors' head/tail rule, reductions to FKL / RKL, detached weights."""

import math

import pytest
import torch

from alignrl.divergences.akl import AKLParams, akl, akl_head_weight
from alignrl.divergences.kl import ForwardKLParams, ReverseKLParams, forward_kl, reverse_kl


def brute_akl(p, q, mu):
    """Loops: sort teacher q descending; head = ranks with cumulative q ≤ μ plus rank 1 (authors' code)."""
    order = sorted(range(len(q)), key=lambda i: -q[i])
    g_head = g_tail = cum = 0.0
    for rank, i in enumerate(order):
        cum += q[i]
        if rank == 0 or cum <= mu:
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
