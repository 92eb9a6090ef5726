"""Top-k form: k = V is the full form; k < V equals a brute-force bucketing; data processing; guards."""

import math

import pytest
import torch

import alignrl.divergences  # noqa: F401  (registers)
from alignrl.divergences import topk_buckets, topk_full
from alignrl.registry import DIVERGENCES

NAMES = DIVERGENCES.names()


def params(name, **kw):
    if name == "f_divergence":
        kw = {"f": lambda u: u * torch.log(u), "f_prime": lambda u: torch.log(u) + 1.0, **kw}
    return DIVERGENCES.entry(name).params(**kw)


def teacher_topk(zq, k):
    logq = torch.log_softmax(zq, -1)
    return torch.topk(logq, k, dim=-1)  # (values, indices): log-probs normalized over V


@pytest.mark.parametrize("name", NAMES)
def test_k_equal_to_vocab_is_the_full_form(name):
    torch.manual_seed(0)
    zp, zq = 2 * torch.randn(2, 3, 7, dtype=torch.float64), 2 * torch.randn(2, 3, 7, dtype=torch.float64)
    values, index = teacher_topk(zq, 7)
    d, p = DIVERGENCES.get(name), params(name, chunk_size=2)
    torch.testing.assert_close(topk_full(d, zp, values, index, p), d.full(zp, zq, p), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("name", ["reverse_kl", "forward_kl", "js", "tv"])
def test_k_below_vocab_matches_brute_force_buckets(name):
    torch.manual_seed(1)
    zp, zq = 2 * torch.randn(3, 8, dtype=torch.float64), 2 * torch.randn(3, 8, dtype=torch.float64)
    values, index = teacher_topk(zq, 3)
    out = topk_full(name, zp, values, index, params(name))
    for r in range(3):
        p, q = torch.softmax(zp[r], -1).tolist(), torch.softmax(zq[r], -1).tolist()
        keep = index[r].tolist()
        pb = [p[i] for i in keep] + [sum(p[i] for i in range(8) if i not in keep)]
        qb = [q[i] for i in keep] + [1.0 - sum(q[i] for i in keep)]
        lp_b, lq_b = torch.tensor(pb, dtype=torch.float64).log(), torch.tensor(qb, dtype=torch.float64).log()
        ref = DIVERGENCES.get(name).dense(lp_b, lq_b, params(name))
        if name == "reverse_kl":  # spelled out once: Σ_b p̃·log(p̃/q̃)
            assert ref.item() == pytest.approx(sum(a * math.log(a / b) for a, b in zip(pb, qb)), abs=1e-14)
        assert out[r].item() == pytest.approx(ref.item(), abs=1e-13)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "akl"])
def test_coarse_graining_never_increases_an_f_divergence(name):
    torch.manual_seed(2)
    zp, zq = 2 * torch.randn(4, 5, 12, dtype=torch.float64), 2 * torch.randn(4, 5, 12, dtype=torch.float64)
    d, p = DIVERGENCES.get(name), params(name)
    full = d.full(zp, zq, p)
    for k in (1, 4, 11):
        values, index = teacher_topk(zq, k)
        # k = V − 1 is an equality up to rounding: the tail 1 − Σ_K q carries ~1e-16 absolute error, which
        # χ² and Tsallis (∝ p²/q) amplify to ~1e-12 relative; hence rtol 1e-9
        assert (topk_full(d, zp, values, index, p) <= full * (1 + 1e-9) + 1e-12).all()


def test_gradients_match_unchunked_autograd_and_reach_the_tail():
    torch.manual_seed(3)
    zp = torch.randn(2, 5, 10, dtype=torch.float64, requires_grad=True)
    zq = torch.randn(2, 5, 10, dtype=torch.float64)
    values, index = teacher_topk(zq, 4)
    js, p = DIVERGENCES.get("js"), params("js", chunk_size=3)
    topk_full(js, zp, values, index, p).sum().backward()
    lp_b, lq_b = topk_buckets(torch.log_softmax(zp, -1), values, index)
    (ref,) = torch.autograd.grad(js.dense(lp_b, lq_b, p).sum(), zp)
    torch.testing.assert_close(zp.grad, ref, rtol=0, atol=1e-15)
    tail = torch.ones_like(zp, dtype=torch.bool).scatter(-1, index, False)
    assert (zp.grad[tail] != 0).all()  # student logits outside the teacher's top-k get gradient via the tail


def test_teacher_topk_holding_all_mass_is_floored_not_nan():
    # the teacher's top-2 hold all mass in float precision: log(1 − Σ) would be log 0
    zq = torch.tensor([[50.0, 50.0, -60.0, -60.0, -60.0]])
    zp = torch.randn(1, 5, requires_grad=True)
    values, index = teacher_topk(zq, 2)
    for name in ("reverse_kl", "forward_kl", "js", "akl"):
        out = topk_full(name, zp, values, index, params(name))
        out.sum().backward()
        assert torch.isfinite(out).all() and torch.isfinite(zp.grad).all()
        zp.grad = None


def test_bf16_and_shape_checks():
    zp, zq = torch.randn(2, 3, 9, dtype=torch.bfloat16), torch.randn(2, 3, 9)
    values, index = teacher_topk(zq, 4)
    assert topk_full("reverse_kl", zp, values.bfloat16(), index, params("reverse_kl")).dtype == torch.float32
    with pytest.raises(ValueError, match="shapes"):
        topk_full("reverse_kl", zp, values[..., :3], index, params("reverse_kl"))
