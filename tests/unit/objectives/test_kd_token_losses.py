"""kd.py (fkl, rkl, jsd, tvd, skew_kl, skew_rkl, akl): hand-worked values on V = 2, equivalence with a
brute-force loop over the vocabulary, gradients (finite differences; closed forms for FKL/RKL/AKL), and
invariances (JSD(β) endpoints and limits, α = 0 skews, μ extremes of AKL, temperature)."""

import math

import pytest
import torch

from alignrl.objectives.distill_base import DistillInputs
from alignrl.objectives.kd import (
    AKLLossParams,
    FKLLossParams,
    JSDLossParams,
    RKLLossParams,
    SkewKLLossParams,
    SkewRKLLossParams,
    TVDLossParams,
    akl_loss,
    fkl_loss,
    jsd_loss,
    rkl_loss,
    skew_kl_loss,
    skew_rkl_loss,
    tvd_loss,
)
from alignrl.registry import DISTILL_LOSSES

F64 = torch.float64
LN3 = math.log(3.0)

LOSSES = {
    "fkl": (fkl_loss, FKLLossParams), "rkl": (rkl_loss, RKLLossParams), "jsd": (jsd_loss, JSDLossParams),
    "tvd": (tvd_loss, TVDLossParams), "skew_kl": (skew_kl_loss, SkewKLLossParams),
    "skew_rkl": (skew_rkl_loss, SkewRKLLossParams), "akl": (akl_loss, AKLLossParams),
}


# ---- brute force: python floats, one position at a time ----------------------------------------------

def softmax(z, tau=1.0):
    m = max(z)
    e = [math.exp((v - m) / tau) for v in z]
    return [v / sum(e) for v in e]


def kl(a, b):
    return sum(x * math.log(x / y) for x, y in zip(a, b) if x > 0)


def brute(name, q, p, **kw):
    """ℓ for student q (= q_θ) and teacher p (= p_T) over a list vocabulary."""
    if name == "fkl":
        return kl(p, q)
    if name == "rkl":
        return kl(q, p)
    if name == "jsd":
        b = kw.get("beta", 0.5)
        if b == 0.0:
            return kl(p, q)
        if b == 1.0:
            return kl(q, p)
        m = [b * x + (1 - b) * y for x, y in zip(p, q)]
        return b * kl(p, m) + (1 - b) * kl(q, m)
    if name == "tvd":
        return 0.5 * sum(abs(x - y) for x, y in zip(p, q))
    if name == "skew_kl":
        a = kw.get("alpha", 0.1)
        return kl(p, [a * x + (1 - a) * y for x, y in zip(p, q)])
    if name == "skew_rkl":
        a = kw.get("alpha", 0.1)
        return kl(q, [(1 - a) * x + a * y for x, y in zip(p, q)])
    if name == "akl":
        w = akl_weight(q, p, kw.get("mu", 0.5))
        return w * kl(p, q) + (1 - w) * kl(q, p)
    raise KeyError(name)


def akl_weight(q, p, mu):
    order = sorted(range(len(p)), key=lambda i: -p[i])  # teacher ranks (ties: lower id first)
    cum, g_head, g_tail = 0.0, 0.0, 0.0
    for rank, i in enumerate(order):
        cum += p[i]
        if rank == 0 or cum <= mu:
            g_head += abs(p[i] - q[i])
        else:
            g_tail += abs(p[i] - q[i])
    return 0.5 if g_head + g_tail == 0 else g_head / (g_head + g_tail)


def one_token(zs, zt):
    """A (1, 1, V) batch from two logit lists."""
    return DistillInputs(logits=torch.tensor([[zs]], dtype=F64, requires_grad=True),
                         logits_teacher=torch.tensor([[zt]], dtype=F64), mask=torch.ones(1, 1, dtype=torch.bool))


# ---- hand-worked values ---------------------------------------------------------------------------------
# student q = softmax([0, 0]) = (1/2, 1/2); teacher p = softmax([0, ln 3]) = (1/4, 3/4)

HAND = {
    # FKL = 1/4·ln((1/4)/(1/2)) + 3/4·ln((3/4)/(1/2)) = −1/4·ln 2 + 3/4·ln(3/2) = 0.1308120359…
    ("fkl", ()): -0.25 * math.log(2) + 0.75 * math.log(1.5),
    # RKL = 1/2·ln((1/2)/(1/4)) + 1/2·ln((1/2)/(3/4)) = 1/2·ln(4/3) = 0.1438410362…
    ("rkl", ()): 0.5 * math.log(4 / 3),
    # JSD(½): M = (3/8, 5/8); ½·[1/4·ln(2/3) + 3/4·ln(6/5)] + ½·[1/2·ln(4/3) + 1/2·ln(4/5)]
    ("jsd", (("beta", 0.5),)): 0.5 * (0.25 * math.log(2 / 3) + 0.75 * math.log(6 / 5))
    + 0.5 * (0.5 * math.log(4 / 3) + 0.5 * math.log(4 / 5)),
    # JSD(0.25): M = 0.25·p + 0.75·q = (7/16, 9/16)
    # 0.25·[1/4·ln(4/7) + 3/4·ln(4/3)] + 0.75·[1/2·ln(8/7) + 1/2·ln(8/9)]
    ("jsd", (("beta", 0.25),)): 0.25 * (0.25 * math.log(4 / 7) + 0.75 * math.log(4 / 3))
    + 0.75 * (0.5 * math.log(8 / 7) + 0.5 * math.log(8 / 9)),
    # TVD = ½·(|1/4 − 1/2| + |3/4 − 1/2|) = 1/4
    ("tvd", ()): 0.25,
    # SKL(0.1): mix = 0.1·p + 0.9·q = (0.475, 0.525); 1/4·ln(0.25/0.475) + 3/4·ln(0.75/0.525)
    ("skew_kl", (("alpha", 0.1),)): 0.25 * math.log(0.25 / 0.475) + 0.75 * math.log(0.75 / 0.525),
    # SRKL(0.1): mix = 0.9·p + 0.1·q = (0.275, 0.725); 1/2·ln(0.5/0.275) + 1/2·ln(0.5/0.725)
    ("skew_rkl", (("alpha", 0.1),)): 0.5 * math.log(0.5 / 0.275) + 0.5 * math.log(0.5 / 0.725),
    # AKL(μ = ½): teacher ranks (v1: 3/4, v0: 1/4), cumsum (0.75, 1) > ½, so head = {v1} (top-1 forced);
    # gaps |3/4 − 1/2| = |1/4 − 1/2| = 1/4 -> w = 1/2 -> AKL = ½·FKL + ½·RKL
    ("akl", (("mu", 0.5),)): 0.5 * (-0.25 * math.log(2) + 0.75 * math.log(1.5)) + 0.25 * math.log(4 / 3),
}


@pytest.mark.parametrize("key", list(HAND), ids=lambda k: f"{k[0]}{dict(k[1])}")
def test_hand_worked_values_on_two_tokens(key):
    name, kw = key
    fn, P = LOSSES[name]
    want = HAND[key]
    assert fn(one_token([0.0, 0.0], [0.0, LN3]), P(**dict(kw))).loss.item() == pytest.approx(want, abs=1e-15)
    # τ = 2 on doubled logits gives the same two distributions
    got = fn(one_token([0.0, 0.0], [0.0, 2 * LN3]), P(temperature=2.0, **dict(kw))).loss.item()
    assert got == pytest.approx(want, abs=1e-15)
    assert want == pytest.approx(brute(name, [0.5, 0.5], [0.25, 0.75], **dict(kw)), abs=1e-15)


def test_hand_worked_token_mean_over_a_masked_sequence():
    # positions: (q, p) = (½,½ | ¼,¾) FKL 0.13081…, (p = q) FKL 0, third position masked out:
    # token_mean = (0.13081… + 0)/2, seq_mean_token_sum = 0.13081…/1
    zs = torch.tensor([[[0.0, 0.0], [1.0, 2.0], [5.0, -5.0]]], dtype=F64)
    zt = torch.tensor([[[0.0, LN3], [1.0, 2.0], [-5.0, 5.0]]], dtype=F64)
    x = DistillInputs(logits=zs, logits_teacher=zt, mask=torch.tensor([[True, True, False]]))
    fkl = -0.25 * math.log(2) + 0.75 * math.log(1.5)
    assert fkl_loss(x, FKLLossParams()).loss.item() == pytest.approx(fkl / 2, abs=1e-15)
    assert fkl_loss(x, FKLLossParams(loss_agg="seq_mean_token_sum")).loss.item() == pytest.approx(fkl, abs=1e-15)


# ---- brute force over the vocabulary ------------------------------------------------------------------

CASES = [("fkl", {}), ("rkl", {}), ("jsd", {"beta": 0.0}), ("jsd", {"beta": 0.1}), ("jsd", {"beta": 0.5}),
         ("jsd", {"beta": 0.9}), ("jsd", {"beta": 1.0}), ("tvd", {}), ("skew_kl", {"alpha": 0.1}),
         ("skew_kl", {"alpha": 0.5}), ("skew_rkl", {"alpha": 0.1}), ("skew_rkl", {"alpha": 0.5}),
         ("akl", {"mu": 0.5}), ("akl", {"mu": 0.0}), ("akl", {"mu": 0.9})]


def random_batch(seed, B=2, T=3, V=5, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    zs = scale * torch.randn(B, T, V, generator=g, dtype=F64)
    zt = scale * torch.randn(B, T, V, generator=g, dtype=F64)
    mask = torch.rand(B, T, generator=g) > 0.3
    mask[0, 0] = True
    return zs, zt, mask


@pytest.mark.parametrize("name,kw", CASES, ids=lambda v: str(v))
@pytest.mark.parametrize("tau", [1.0, 0.7])
def test_matches_a_loop_over_the_vocabulary(name, kw, tau):
    zs, zt, mask = random_batch(11)
    fn, P = LOSSES[name]
    out = fn(DistillInputs(logits=zs, logits_teacher=zt, mask=mask), P(temperature=tau, **kw))
    total, count = 0.0, 0
    for b in range(zs.shape[0]):
        for t in range(zs.shape[1]):
            if mask[b, t]:
                total += brute(name, softmax(zs[b, t].tolist(), tau), softmax(zt[b, t].tolist(), tau), **kw)
                count += 1
    assert out.loss.item() == pytest.approx(total / count, rel=1e-13, abs=1e-15)


@pytest.mark.parametrize("name,kw", [c for c in CASES if c[0] != "akl"], ids=lambda v: str(v))
def test_gradient_matches_finite_differences(name, kw):
    zs, zt, mask = random_batch(12, B=1, T=3, V=4)
    fn, P = LOSSES[name]
    p = P(temperature=1.3, chunk_size=1, **kw)
    zs = zs.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda z: fn(DistillInputs(logits=z, logits_teacher=zt, mask=mask), p).loss, (zs,), eps=1e-6, atol=1e-8
    )


def test_fkl_rkl_akl_gradients_have_their_closed_forms():
    # ∂KL(p‖q)/∂z_S = (q − p)/τ;  ∂KL(q‖p)/∂z_S = q·(log q − log p − KL(q‖p))/τ;  AKL = w·∇FKL + (1 − w)·∇RKL
    zs, zt, mask = random_batch(13)
    tau, n = 1.5, mask.sum()
    logq, logp = torch.log_softmax(zs / tau, -1), torch.log_softmax(zt / tau, -1)
    q, p = logq.exp(), logp.exp()
    rkl = (q * (logq - logp)).sum(-1, keepdim=True)
    g_fkl = (q - p) / tau * mask.unsqueeze(-1) / n
    g_rkl = q * (logq - logp - rkl) / tau * mask.unsqueeze(-1) / n
    w = torch.tensor([[akl_weight(q[b, t].tolist(), p[b, t].tolist(), 0.5) for t in range(3)] for b in range(2)],
                     dtype=F64)
    for fn, P, want in ((fkl_loss, FKLLossParams, g_fkl), (rkl_loss, RKLLossParams, g_rkl),
                        (akl_loss, AKLLossParams, w.unsqueeze(-1) * g_fkl + (1 - w.unsqueeze(-1)) * g_rkl)):
        leaf = zs.clone().requires_grad_()
        fn(DistillInputs(logits=leaf, logits_teacher=zt, mask=mask), P(temperature=tau)).loss.backward()
        torch.testing.assert_close(leaf.grad, want, rtol=1e-12, atol=1e-16)


# ---- invariances --------------------------------------------------------------------------------------

def loss_of(name, zs, zt, mask, **kw):
    fn, P = LOSSES[name]
    return fn(DistillInputs(logits=zs, logits_teacher=zt, mask=mask), P(**kw)).loss.item()


def test_jsd_endpoints_are_fkl_and_rkl_and_the_interior_tends_to_them():
    # GKD/TRL convention: β = 0 → KL(p_T‖q_θ), β = 1 → KL(q_θ‖p_T); eq. 1 itself vanishes there, and
    # JSD(β)/β → FKL as β → 0, JSD(β)/(1 − β) → RKL as β → 1 (first order in β).
    zs, zt, mask = random_batch(14)
    fkl, rkl = loss_of("fkl", zs, zt, mask), loss_of("rkl", zs, zt, mask)
    assert loss_of("jsd", zs, zt, mask, beta=0.0) == fkl
    assert loss_of("jsd", zs, zt, mask, beta=1.0) == rkl
    for eps in (1e-4, 1e-5):
        assert loss_of("jsd", zs, zt, mask, beta=eps) / eps == pytest.approx(fkl, rel=20 * eps)
        assert loss_of("jsd", zs, zt, mask, beta=1 - eps) / eps == pytest.approx(rkl, rel=20 * eps)


def test_jsd_half_is_symmetric_and_bounded_by_log2():
    zs, zt, mask = random_batch(15, scale=6.0)
    a, b = loss_of("jsd", zs, zt, mask, beta=0.5), loss_of("jsd", zt, zs, mask, beta=0.5)
    assert a == pytest.approx(b, rel=1e-14) and 0 < a < math.log(2)


def test_skews_at_alpha_zero_are_fkl_and_rkl_and_bounded_by_minus_log_alpha():
    zs, zt, mask = random_batch(16, scale=8.0)
    assert loss_of("skew_kl", zs, zt, mask, alpha=0.0) == pytest.approx(loss_of("fkl", zs, zt, mask), rel=1e-14)
    assert loss_of("skew_rkl", zs, zt, mask, alpha=0.0) == pytest.approx(loss_of("rkl", zs, zt, mask), rel=1e-14)
    for a in (0.1, 0.5):
        assert 0 < loss_of("skew_kl", zs, zt, mask, alpha=a) <= -math.log(a)
        assert 0 < loss_of("skew_rkl", zs, zt, mask, alpha=a) <= -math.log(a)


def test_akl_is_a_convex_mix_of_fkl_and_rkl_at_every_position():
    zs, zt, mask = random_batch(17)
    for b in range(2):
        for t in range(3):
            one = (zs[b, t].view(1, 1, -1), zt[b, t].view(1, 1, -1), torch.ones(1, 1, dtype=torch.bool))
            f, r = loss_of("fkl", *one), loss_of("rkl", *one)
            for mu in (0.0, 0.5, 1.0):
                assert min(f, r) - 1e-15 <= loss_of("akl", *one, mu=mu) <= max(f, r) + 1e-15


@pytest.mark.parametrize("name", list(LOSSES))
def test_nonnegative_and_registered(name):
    zs, zt, mask = random_batch(18)
    assert loss_of(name, zs, zt, mask) > 0
    assert DISTILL_LOSSES.get(name) is LOSSES[name][0] and DISTILL_LOSSES.entry(name).params is LOSSES[name][1]


@pytest.mark.parametrize("bad", [("jsd", {"beta": -0.1}), ("jsd", {"beta": 1.1}), ("skew_kl", {"alpha": 1.0}),
                                 ("skew_rkl", {"alpha": -0.1}), ("akl", {"mu": 1.5})])
def test_knobs_are_validated(bad):
    name, kw = bad
    with pytest.raises(ValueError):
        LOSSES[name][1](**kw)
