"""DistiLLM-2: hand-worked pair, brute force, the released code's pair normalization (= 2 × ours with
seq_mean_token_mean on B teacher + B student rows), row order does not matter, validation."""

import dataclasses
import math

import pytest
import torch

from alignrl.objectives.distill_base import DistillInputs
from alignrl.objectives.distillm2 import DistiLLM2Params, distillm2_loss
from alignrl.objectives.kd import SkewKLLossParams, SkewRKLLossParams, skew_kl_loss, skew_rkl_loss
from alignrl.registry import DISTILL_LOSSES

F64 = torch.float64
LN3 = math.log(3.0)
# q_θ = (1/2, 1/2), p_T = (1/4, 3/4), α = 0.1:
SKL = 0.25 * math.log(0.25 / 0.475) + 0.75 * math.log(0.75 / 0.525)  # KL(p_T ‖ 0.1·p_T + 0.9·q_θ)
SRKL = 0.5 * math.log(0.5 / 0.275) + 0.5 * math.log(0.5 / 0.725)  # KL(q_θ ‖ 0.9·p_T + 0.1·q_θ)


def pair_of_one_token_rows():
    zs = torch.tensor([[[0.0, 0.0]], [[0.0, 0.0]]], dtype=F64)
    zt = torch.tensor([[[0.0, LN3]], [[0.0, LN3]]], dtype=F64)
    return zs, zt, torch.ones(2, 1, dtype=torch.bool), torch.tensor([False, True])


def test_registered_and_validated():
    assert DISTILL_LOSSES.get("distillm2") is distillm2_loss
    assert DISTILL_LOSSES.entry("distillm2").params is DistiLLM2Params
    for bad in (dict(alpha_teacher=1.0), dict(alpha_student=-0.1), dict(beta=2.5)):
        with pytest.raises(ValueError):
            DistiLLM2Params(**bad)


def test_hand_worked_pair():
    zs, zt, mask, fs = pair_of_one_token_rows()
    x = DistillInputs(logits=zs, logits_teacher=zt, mask=mask, from_student=fs)
    # β = 1: token_mean = (1·SKL + 1·SRKL)/2
    out = distillm2_loss(x, DistiLLM2Params())
    assert out.loss.item() == pytest.approx((SKL + SRKL) / 2, abs=1e-15)
    assert out.metrics["skew_kl_teacher"].item() == pytest.approx(SKL, abs=1e-15)
    assert out.metrics["skew_rkl_student"].item() == pytest.approx(SRKL, abs=1e-15)
    assert out.metrics["divergence"].item() == pytest.approx((SKL + SRKL) / 2, abs=1e-15)
    # β = 1.5: ((2 − 1.5)·SKL + 1.5·SRKL)/2
    out = distillm2_loss(x, DistiLLM2Params(beta=1.5))
    assert out.loss.item() == pytest.approx((0.5 * SKL + 1.5 * SRKL) / 2, abs=1e-15)
    # different skews per side: α₁ = 0.5 -> mix (0.375, 0.625): 1/4·ln(2/3) + 3/4·ln(6/5)
    out = distillm2_loss(x, DistiLLM2Params(alpha_teacher=0.5))
    skl_half = 0.25 * math.log(0.25 / 0.375) + 0.75 * math.log(0.75 / 0.625)
    assert out.metrics["skew_kl_teacher"].item() == pytest.approx(skl_half, abs=1e-15)


def random_pairs(seed, B=3, T=4, V=6):
    g = torch.Generator().manual_seed(seed)
    zs = 2 * torch.randn(2 * B, T, V, generator=g, dtype=F64)
    zt = 2 * torch.randn(2 * B, T, V, generator=g, dtype=F64)
    mask = torch.rand(2 * B, T, generator=g) > 0.25
    mask[:, 0] = True
    return zs, zt, mask, torch.arange(2 * B) >= B  # rows [0, B): teacher responses, [B, 2B): student


def test_matches_a_loop_over_the_vocabulary():
    zs, zt, mask, fs = random_pairs(1)
    out = distillm2_loss(DistillInputs(logits=zs, logits_teacher=zt, mask=mask, from_student=fs),
                         DistiLLM2Params(alpha_teacher=0.2, alpha_student=0.3, beta=1.2, temperature=0.8))
    total = 0.0
    for b in range(zs.shape[0]):
        for t in range(zs.shape[1]):
            if not mask[b, t]:
                continue
            q = torch.softmax(zs[b, t] / 0.8, -1).tolist()
            p = torch.softmax(zt[b, t] / 0.8, -1).tolist()
            if fs[b]:
                total += 1.2 * sum(a * math.log(a / (0.7 * c + 0.3 * a)) for a, c in zip(q, p))
            else:
                total += 0.8 * sum(c * math.log(c / (0.2 * c + 0.8 * a)) for a, c in zip(q, p))
    assert out.loss.item() == pytest.approx(total / mask.sum().item(), rel=1e-13)


@pytest.mark.parametrize("beta", [1.0, 1.5])
def test_released_pair_normalization_is_twice_seq_mean_token_mean(beta):
    # released: mean_pairs[(2 − β)·mean_t SKL(y_T) + β·mean_t SRKL(y_S)] =
    #   (2 − β)·skew_kl(teacher rows, seq_mean_token_mean) + β·skew_rkl(student rows, seq_mean_token_mean)
    zs, zt, mask, fs = random_pairs(2)
    B = zs.shape[0] // 2
    leaf = zs.clone().requires_grad_()
    ours = distillm2_loss(DistillInputs(logits=leaf, logits_teacher=zt, mask=mask, from_student=fs),
                          DistiLLM2Params(beta=beta, loss_agg="seq_mean_token_mean"))
    ours.loss.backward()
    ref_leaf = zs.clone().requires_grad_()
    half = dict(loss_agg="seq_mean_token_mean")
    released = ((2 - beta) * skew_kl_loss(DistillInputs(logits=ref_leaf[:B], logits_teacher=zt[:B], mask=mask[:B]),
                                          SkewKLLossParams(**half)).loss
                + beta * skew_rkl_loss(DistillInputs(logits=ref_leaf[B:], logits_teacher=zt[B:], mask=mask[B:]),
                                       SkewRKLLossParams(**half)).loss)
    released.backward()
    assert released.item() == pytest.approx(2 * ours.loss.item(), rel=1e-14)
    torch.testing.assert_close(ref_leaf.grad, 2 * leaf.grad, rtol=1e-13, atol=1e-17)


def test_row_order_does_not_matter():
    zs, zt, mask, fs = random_pairs(3)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    a = distillm2_loss(DistillInputs(logits=zs, logits_teacher=zt, mask=mask, from_student=fs), DistiLLM2Params())
    b = distillm2_loss(DistillInputs(logits=zs[perm], logits_teacher=zt[perm], mask=mask[perm], from_student=fs[perm]),
                       DistiLLM2Params())
    assert a.loss.item() == pytest.approx(b.loss.item(), rel=1e-14)


def test_all_teacher_rows_is_skew_kl_and_all_student_rows_is_skew_rkl():
    zs, zt, mask, _ = random_pairs(4)
    p = DistiLLM2Params(beta=1.0)
    for flag, ref_fn, ref_p in ((False, skew_kl_loss, SkewKLLossParams()), (True, skew_rkl_loss, SkewRKLLossParams())):
        x = DistillInputs(logits=zs, logits_teacher=zt, mask=mask, from_student=torch.full((zs.shape[0],), flag))
        want = ref_fn(dataclasses.replace(x, from_student=None), ref_p).loss.item()
        assert distillm2_loss(x, p).loss.item() == pytest.approx(want, rel=1e-14)


def test_needs_from_student():
    zs, zt, mask, _ = random_pairs(5)
    with pytest.raises(ValueError, match="from_student"):
        distillm2_loss(DistillInputs(logits=zs, logits_teacher=zt, mask=mask), DistiLLM2Params())
