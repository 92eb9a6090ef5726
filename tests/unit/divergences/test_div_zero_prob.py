"""Zero-probability vocabulary entries (−inf logits: padded vocabulary, constrained decoding).

An entry that is −inf in both models carries no mass in either distribution: every registered divergence
(full and top-k forms) must equal its value on the vocabulary with that entry removed, with finite
gradients that are 0 on the removed entries. Where only the anchor is 0 the definitions' +inf is kept.
"""

import math

import pytest
import torch

import alignrl.divergences  # noqa: F401  (registers)
from alignrl.divergences import topk_full
from alignrl.divergences.base import expect, log_mix, weighted, weighted_expm1
from alignrl.registry import DIVERGENCES

F64 = torch.float64
V, DEAD = 11, (0, 4, 9)  # vocabulary entries set to −inf in both student and teacher
KEEP = [v for v in range(V) if v not in DEAD]


def params(name, **kw):
    if name == "f_divergence":  # reverse-KL generator
        kw = {"f": lambda u: u * torch.log(u), "f_prime": lambda u: torch.log(u) + 1.0, **kw}
    return DIVERGENCES.entry(name).params(**kw)


# every registered divergence at its defaults, plus the knob values with their own code paths
CASES = [(name, {}) for name in DIVERGENCES.names()] + [
    ("alpha", {"alpha": 0.0}), ("alpha", {"alpha": 0.3}), ("alpha", {"alpha": 1.0}), ("alpha", {"alpha": 2.0}),
    ("alpha", {"alpha": -0.5}), ("tsallis", {"q": 0.5}), ("tsallis", {"q": 1.0}),
    ("chi2", {"log_ratio_clamp": math.inf}), ("generalized_jsd", {"beta": 0.1}), ("skew_kl", {"alpha": 0.0}),
    ("skew_reverse_kl", {"alpha": 0.0}), ("skew_reverse_kl", {"alpha": 0.3, "detach_mixture": True}),
    ("akl", {"mu": 0.0}), ("akl", {"mu": 1.0}),
]


def logits_with_dead_entries(seed):
    g = torch.Generator().manual_seed(seed)
    zp, zq = 2 * torch.randn(2, 3, V, dtype=F64, generator=g), 2 * torch.randn(2, 3, V, dtype=F64, generator=g)
    zp[..., DEAD] = -math.inf
    zq[..., DEAD] = -math.inf
    return zp, zq


def weights(out):
    return torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).view_as(out)


@pytest.mark.parametrize("name,kw", CASES, ids=lambda v: str(v))
def test_entries_dead_in_both_models_are_the_removed_vocabulary_full_form(name, kw):
    d, p = DIVERGENCES.get(name), params(name, chunk_size=2, **kw)
    zp0, zq0 = logits_with_dead_entries(0)
    zp, zq = zp0.clone().requires_grad_(), zq0.clone().requires_grad_()
    out = d.full(zp, zq, p)
    (out * weights(out)).sum().backward()
    rp, rq = zp0[..., KEEP].clone().requires_grad_(), zq0[..., KEEP].clone().requires_grad_()
    ref = d.full(rp, rq, p)
    (ref * weights(ref)).sum().backward()
    assert torch.isfinite(ref).all()
    torch.testing.assert_close(out, ref, rtol=1e-13, atol=1e-15)
    for g, g_ref in ((zp.grad, rp.grad), (zq.grad, rq.grad)):
        assert torch.isfinite(g).all()
        assert (g[..., DEAD] == 0).all()
        torch.testing.assert_close(g[..., KEEP], g_ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name,kw", CASES, ids=lambda v: str(v))
def test_entries_dead_in_both_models_are_the_removed_vocabulary_topk_form(name, kw):
    """k = V (the dead entries are buckets of their own, q̃ = p̃ = 0) and k = 3 (they fall in the tail)."""
    d, p = DIVERGENCES.get(name), params(name, chunk_size=2, **kw)
    zp0, zq0 = logits_with_dead_entries(1)
    for k_full, k_reduced in ((V, len(KEEP)), (3, 3)):
        values, index = torch.topk(torch.log_softmax(zq0, -1), k_full, dim=-1)
        r_values, r_index = torch.topk(torch.log_softmax(zq0[..., KEEP], -1), k_reduced, dim=-1)
        zp, rp = zp0.clone().requires_grad_(), zp0[..., KEEP].clone().requires_grad_()
        out = topk_full(d, zp, values, index, p)
        ref = topk_full(d, rp, r_values, r_index, p)
        (out * weights(out)).sum().backward()
        (ref * weights(ref)).sum().backward()
        assert torch.isfinite(ref).all()
        torch.testing.assert_close(out, ref, rtol=1e-13, atol=1e-15)
        assert torch.isfinite(zp.grad).all() and (zp.grad[..., DEAD] == 0).all()
        torch.testing.assert_close(zp.grad[..., KEEP], rp.grad, rtol=1e-12, atol=1e-14)


def test_fp32_dead_entries_stay_finite():
    zp, zq = logits_with_dead_entries(2)
    zp, zq = zp.float().requires_grad_(), zq.float()
    for name in DIVERGENCES.names():
        out = DIVERGENCES.get(name).full(zp, zq, params(name))
        out.sum().backward()
        assert torch.isfinite(out).all() and torch.isfinite(zp.grad).all(), name
        zp.grad = None


def test_helpers_zero_weight_convention():
    logw = torch.tensor([-math.inf, -math.inf, -math.inf, -math.inf, math.log(0.5)], dtype=F64, requires_grad=True)
    x = torch.tensor([math.nan, math.inf, -math.inf, 3.0, 2.0], dtype=F64, requires_grad=True)
    term = weighted(logw, x)
    assert term.tolist() == [0.0, 0.0, 0.0, 0.0, 1.0]
    term.sum().backward()
    assert logw.grad.tolist() == [0.0, 0.0, 0.0, 0.0, 1.0] and x.grad.tolist() == [0.0, 0.0, 0.0, 0.0, 0.5]
    assert expect(logw.detach(), x.detach()).item() == 1.0
    # w·(eʸ − 1): 0 where w = 0 whatever y is; exact exp(logw + y) for a w > 0 that underflows
    y = torch.tensor([math.nan, math.inf, -math.inf, 0.5, 800.0], dtype=F64)
    lw = torch.tensor([-math.inf] * 4 + [-1000.0], dtype=F64)
    torch.testing.assert_close(weighted_expm1(lw, y), torch.tensor([0, 0, 0, 0, math.exp(-200.0)], dtype=F64), rtol=1e-14, atol=0)
    # log of a mixture of two zeros: −inf, zero gradient (logaddexp alone gives NaN gradients there)
    a = torch.tensor([-math.inf, -math.inf, 0.0], dtype=F64, requires_grad=True)
    b = torch.tensor([-math.inf, 0.0, -math.inf], dtype=F64, requires_grad=True)
    m = log_mix(a, b, 0.25)
    assert m[0].item() == -math.inf
    torch.testing.assert_close(m[1:], torch.tensor([math.log(0.75), math.log(0.25)], dtype=F64), rtol=0, atol=1e-15)
    m[1:].sum().backward()
    assert a.grad.tolist() == [0.0, 0.0, 1.0] and b.grad.tolist() == [0.0, 1.0, 0.0]


def test_one_sided_zeros_keep_the_definitions():
    """p = 0 < q adds 0 to KL(p‖q); q = 0 < p makes it +inf (not NaN), also when p underflows."""
    zq = torch.tensor([[0.3, -0.2, 1.0, -math.inf]], dtype=F64)
    zp = torch.tensor([[0.1, 0.5, -0.4, 2.0]], dtype=F64, requires_grad=True)
    get = DIVERGENCES.get
    # q = 0 < p: the KL(p‖q)-type divergences are +inf
    for name, kw in (("reverse_kl", {}), ("jeffreys", {}), ("alpha", {"alpha": 1.5}), ("tsallis", {"q": 2.0}),
                     ("chi2", {"log_ratio_clamp": math.inf}), ("skew_reverse_kl", {"alpha": 0.0}), ("akl", {})):
        out = get(name).full(zp, zq, params(name, **kw))
        assert out.item() == math.inf, name
        (0.0 * out).sum().backward()  # a zero upstream gradient (masked position, zero mix weight) stays 0
        assert (zp.grad == 0).all(), name
        zp.grad = None
    # ... and finite for the bounded ones and the mass-covering direction
    for name in ("forward_kl", "js", "skew_kl", "skew_reverse_kl", "tv", "hellinger", "chi2"):
        out = get(name).full(zp, zq, params(name))
        out.backward()
        assert torch.isfinite(out).all() and torch.isfinite(zp.grad).all(), name
        zp.grad = None
    # forward_kl = KL(q‖p) with q = 0 at the last entry: exactly the 3-entry sum over q > 0
    lp, lq = torch.log_softmax(zp.detach(), -1), torch.log_softmax(zq, -1)
    brute = sum(math.exp(b) * (b - a) for a, b in zip(lp[0, :3].tolist(), lq[0, :3].tolist()))
    assert get("forward_kl").full(zp.detach(), zq, params("forward_kl")).item() == pytest.approx(brute, abs=1e-15)
    # AKL at μ = 1 is forward_kl even though KL(p‖q) = +inf here (its weight is exactly 0)
    assert get("akl").full(zp.detach(), zq, params("akl", mu=1.0)).item() == get("forward_kl").full(
        zp.detach(), zq, params("forward_kl")).item()
    # p > 0 that underflows to 0 in fp32 (finite logit floor) against an exact −inf: +inf, never NaN
    zp32 = torch.tensor([[0.0, 0.0, 0.0, -200.0]], dtype=torch.float32)
    zq32 = torch.tensor([[0.0, 0.0, 0.0, -math.inf]], dtype=torch.float32)
    for name in ("reverse_kl", "jeffreys"):
        assert get(name).full(zp32, zq32, params(name)).item() == math.inf, name
