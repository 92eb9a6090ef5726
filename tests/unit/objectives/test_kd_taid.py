"""TAID: hand-worked target and loss, t = 1 is FKL from the teacher, t = 0 is zero, the gradient is
(q_θ − p_t)/τ (the student inside p_t is a constant), brute force over the vocabulary, and the
adaptive schedule step by step."""

import math

import pytest
import torch

from alignrl.objectives.distill_base import DistillInputs
from alignrl.objectives.kd import FKLLossParams, fkl_loss
from alignrl.objectives.taid import TAIDParams, TAIDSchedule, taid_loss
from alignrl.registry import DISTILL_LOSSES

F64 = torch.float64
LN3 = math.log(3.0)


def random_batch(seed, B=2, T=3, V=5, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    zs = scale * torch.randn(B, T, V, generator=g, dtype=F64)
    zt = scale * torch.randn(B, T, V, generator=g, dtype=F64)
    mask = torch.rand(B, T, generator=g) > 0.3
    mask[0, 0] = True
    return zs, zt, mask


def run(zs, zt, mask, **kw):
    leaf = zs.clone().requires_grad_()
    out = taid_loss(DistillInputs(logits=leaf, logits_teacher=zt, mask=mask), TAIDParams(**kw))
    out.loss.backward()
    return out, leaf.grad


def test_registered():
    assert DISTILL_LOSSES.get("taid") is taid_loss and DISTILL_LOSSES.entry("taid").params is TAIDParams
    for bad in (-0.1, 1.1):
        with pytest.raises(ValueError):
            TAIDParams(t=bad)


def test_hand_worked_half_way_target():
    # z_S = [0, 0], z_T = [0, 2 ln 3], t = ½: (1 − t)·z_S + t·z_T = [0, ln 3] -> p_t = (1/4, 3/4);
    # q_θ = (1/2, 1/2); KL(p_t‖q_θ) = −1/4·ln 2 + 3/4·ln(3/2) = 0.1308…; ∂/∂z_S = q_θ − p_t = (1/4, −1/4)
    zs, zt = torch.tensor([[[0.0, 0.0]]], dtype=F64), torch.tensor([[[0.0, 2 * LN3]]], dtype=F64)
    out, g = run(zs, zt, torch.ones(1, 1, dtype=torch.bool), t=0.5)
    assert out.loss.item() == pytest.approx(-0.25 * math.log(2) + 0.75 * math.log(1.5), abs=1e-15)
    torch.testing.assert_close(g, torch.tensor([[[0.25, -0.25]]], dtype=F64), rtol=0, atol=1e-15)
    # τ = 2 on z_T = [0, 4 ln 3]: ((1 − ½)·0 + ½·4 ln 3)/2 = ln 3 again; q_θ unchanged; gradient halves
    zt4 = torch.tensor([[[0.0, 4 * LN3]]], dtype=F64)
    out, g = run(zs, zt4, torch.ones(1, 1, dtype=torch.bool), t=0.5, temperature=2.0)
    assert out.loss.item() == pytest.approx(-0.25 * math.log(2) + 0.75 * math.log(1.5), abs=1e-15)
    torch.testing.assert_close(g, torch.tensor([[[0.125, -0.125]]], dtype=F64), rtol=0, atol=1e-15)


@pytest.mark.parametrize("tau", [1.0, 0.6])
def test_t_one_is_forward_kl_from_the_teacher(tau):
    zs, zt, mask = random_batch(1)
    out, g = run(zs, zt, mask, t=1.0, temperature=tau)
    leaf = zs.clone().requires_grad_()
    ref = fkl_loss(DistillInputs(logits=leaf, logits_teacher=zt, mask=mask), FKLLossParams(temperature=tau))
    ref.loss.backward()
    assert out.loss.item() == pytest.approx(ref.loss.item(), rel=1e-15)
    torch.testing.assert_close(g, leaf.grad, rtol=1e-14, atol=1e-16)


def test_t_zero_targets_the_student_itself():
    zs, zt, mask = random_batch(2)
    zt[0, 0, 0] = -math.inf  # the teacher's logits are not even read at t = 0
    out, g = run(zs, zt, mask, t=0.0)
    assert out.loss.item() == 0.0 and g.abs().max().item() < 1e-16  # q_θ − q_θ up to rounding


@pytest.mark.parametrize("t", [0.3, 0.75])
def test_gradient_treats_the_student_inside_the_target_as_constant(t):
    # ∂/∂z_S KL(p_t‖softmax(z_S/τ)) = (q_θ − p_t)/τ when p_t is sg(·); a gradient through p_t would differ
    zs, zt, mask = random_batch(3)
    tau = 1.4
    out, g = run(zs, zt, mask, t=t, temperature=tau)
    q = torch.softmax(zs / tau, -1)
    p_t = torch.softmax(((1 - t) * zs + t * zt) / tau, -1)
    want = (q - p_t) / tau * mask.unsqueeze(-1) / mask.sum()
    torch.testing.assert_close(g, want, rtol=1e-12, atol=1e-16)


@pytest.mark.parametrize("t", [0.2, 0.4, 0.9])
def test_matches_a_loop_over_the_vocabulary(t):
    zs, zt, mask = random_batch(4)
    out, _ = run(zs, zt, mask, t=t)
    total = 0.0
    for b in range(2):
        for s in range(3):
            if not mask[b, s]:
                continue
            zmix = [(1 - t) * a + t * c for a, c in zip(zs[b, s].tolist(), zt[b, s].tolist())]
            pt = [math.exp(v) / sum(math.exp(u) for u in zmix) for v in zmix]
            q = [math.exp(v) / sum(math.exp(u) for u in zs[b, s].tolist()) for v in zs[b, s].tolist()]
            total += sum(a * math.log(a / c) for a, c in zip(pt, q))
    assert out.loss.item() == pytest.approx(total / mask.sum().item(), rel=1e-13)


def test_loss_decreases_towards_zero_as_t_falls():
    # KL(p_t‖q_θ) grows with t on these inputs: the target starts at the student and ends at the teacher
    zs, zt, mask = random_batch(5)
    values = [run(zs, zt, mask, t=t)[0].loss.item() for t in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert values[0] == 0.0 and all(a < b for a, b in zip(values, values[1:]))


# ---- the schedule --------------------------------------------------------------------------------------

def sigmoid(m):
    return 1.0 / (1.0 + math.exp(-m))


def test_schedule_step_by_step():
    s = TAIDSchedule(total_steps=10, t_start=0.4, t_end=1.0, alpha=0.5, beta=0.9)
    # step 0: only records L = 2
    assert s.update(2.0) == 0.4
    # step 1: δ = (2 − 1)/2 = 0.5; m = 0.1·0.5 = 0.05; Δ = 0.5·σ(0.05)·(1 − 0.4); t_lin = 0.4 + 0.6·1/10 = 0.46
    t1 = 0.4 + 0.5 * sigmoid(0.05) * 0.6
    assert s.update(1.0) == pytest.approx(t1, abs=1e-15) and t1 > 0.46
    # step 2: δ = (1 − 1.5)/1 = −0.5; m = 0.9·0.05 + 0.1·(−0.5) = −0.005; Δ = 0.5·σ(−0.005)·(1 − t1)
    t2 = t1 + 0.5 * sigmoid(-0.005) * (1 - t1)
    assert s.update(1.5) == pytest.approx(t2, abs=1e-15)
    assert s.momentum == pytest.approx(-0.005, abs=1e-15) and s.prev_loss == 1.5
    # later: capped at t_end
    for _ in range(50):
        s.update(1.0)
    assert s.t == 1.0


def test_schedule_linear_floor_when_the_adaptive_step_is_small():
    s = TAIDSchedule(total_steps=4, t_start=0.4, t_end=0.8, alpha=0.0)  # α = 0: only t_lin moves t
    assert [s.update(1.0) for _ in range(6)] == pytest.approx([0.4, 0.5, 0.6, 0.7, 0.8, 0.8], abs=1e-15)
    lin = TAIDSchedule(total_steps=4, t_start=0.4, t_end=0.8, alpha=0.5, adaptive=False)
    assert [lin.update(1.0, step=k) for k in (0, 2, 3)] == pytest.approx([0.4, 0.6, 0.7], abs=1e-15)


def test_schedule_is_monotone_survives_a_zero_loss_and_round_trips_its_state():
    s = TAIDSchedule(total_steps=100)
    ts = [s.update(v) for v in (0.0, 1.0, 0.5, 3.0, 0.0, 2.0)]  # δ = −1e15 after the zero: σ(m) → 0, no overflow
    assert all(a <= b for a, b in zip(ts, ts[1:])) and all(0.4 <= t <= 1.0 for t in ts)
    r = TAIDSchedule(total_steps=100)
    r.load_state_dict(s.state_dict())
    assert r.update(1.0) == s.update(1.0)


@pytest.mark.parametrize("bad", [dict(total_steps=0), dict(t_start=1.0), dict(t_end=0.0), dict(t_start=0.6, t_end=0.5),
                                 dict(alpha=2.0), dict(beta=1.0)])
def test_schedule_validates(bad):
    with pytest.raises(ValueError):
        TAIDSchedule(**{"total_steps": 10, **bad})
