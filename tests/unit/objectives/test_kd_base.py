"""Distillation inputs and the shared machinery, checked across every DISTILL_LOSSES entry: validation,
masked garbage (NaN/inf) changes neither loss nor gradients, the top-k form at k = V equals the full
form, aggregation modes and weights go through ops.aggregate, metrics are detached, bf16 is upcast."""

import dataclasses
import math

import pytest
import torch

import alignrl.objectives  # noqa: F401  (registers)
from alignrl.objectives.distill_base import DistillInputs, DistillParams
from alignrl.objectives.kd import FKLLossParams, JSDLossParams, fkl_loss
from alignrl.ops import aggregate
from alignrl.registry import DISTILL_LOSSES

F64 = torch.float64
NAMES = DISTILL_LOSSES.names()
EXPECTED = {"fkl", "rkl", "jsd", "tvd", "skew_kl", "skew_rkl", "akl", "taid", "distillm2", "gkd"}
TOPK_NAMES = [n for n in NAMES if n != "taid"]  # TAID interpolates all V logits


def params(name, **kw):
    if name == "taid":
        kw.setdefault("t", 0.6)
    return DISTILL_LOSSES.entry(name).params(**kw)


def batch(seed=0, B=3, T=4, V=6, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    zs = scale * torch.randn(B, T, V, generator=g, dtype=F64)
    zt = scale * torch.randn(B, T, V, generator=g, dtype=F64)
    mask = torch.rand(B, T, generator=g) > 0.3
    mask[0, 0] = True
    from_student = torch.arange(B) % 2 == 1
    return zs, zt, mask, from_student


def run(name, zs, zt, mask, from_student, p=None, **fields):
    leaf = zs.clone().requires_grad_()
    x = DistillInputs(logits=leaf, logits_teacher=zt, mask=mask, from_student=from_student, **fields)
    out = DISTILL_LOSSES.get(name)(x, p or params(name))
    out.loss.backward()
    return out, leaf.grad


def test_registry_holds_every_distillation_loss_with_frozen_params():
    assert set(NAMES) == EXPECTED
    for name in NAMES:
        entry = DISTILL_LOSSES.entry(name)
        assert issubclass(entry.params, DistillParams) and entry.fn.__doc__
        with pytest.raises(dataclasses.FrozenInstanceError):
            params(name).temperature = 2.0


@pytest.mark.parametrize("bad", [dict(temperature=0.0), dict(temperature=math.inf), dict(loss_agg="mean"),
                                 dict(chunk_size=0), dict(topk_tail_min=0.0)])
def test_shared_params_are_validated(bad):
    for name in NAMES:
        with pytest.raises(ValueError):
            params(name, **bad)


def test_inputs_validate_shapes_and_teacher_forms():
    zs, zt, mask, fs = batch()
    values, index = torch.log_softmax(zt, -1).topk(3, dim=-1)
    with pytest.raises(ValueError, match="exactly one teacher form"):
        DistillInputs(logits=zs, mask=mask)
    with pytest.raises(ValueError, match="exactly one teacher form"):
        DistillInputs(logits=zs, mask=mask, logits_teacher=zt, logp_teacher_topk=values, index_teacher_topk=index)
    with pytest.raises(ValueError, match="needs index_teacher_topk"):
        DistillInputs(logits=zs, mask=mask, logp_teacher_topk=values)
    with pytest.raises(ValueError, match="logits_teacher"):
        DistillInputs(logits=zs, mask=mask, logits_teacher=zt[:, :-1])
    with pytest.raises(ValueError, match="mask"):
        DistillInputs(logits=zs, mask=mask[:, :-1], logits_teacher=zt)
    with pytest.raises(ValueError, match="weights"):
        DistillInputs(logits=zs, mask=mask, logits_teacher=zt, weights=torch.ones(3))
    with pytest.raises(ValueError, match="from_student"):
        DistillInputs(logits=zs, mask=mask, logits_teacher=zt, from_student=mask)
    with pytest.raises(ValueError, match=r"\(B, T, V\)"):
        DistillInputs(logits=zs[0], mask=mask, logits_teacher=zt[0])
    with pytest.raises(ValueError, match="index_teacher_topk"):
        DistillInputs(logits=zs, mask=mask, logp_teacher_topk=values, index_teacher_topk=index[..., :2])


@pytest.mark.parametrize("name", NAMES)
def test_garbage_at_masked_positions_changes_neither_loss_nor_gradients(name):
    zs, zt, mask, fs = batch(1)
    clean, g_clean = run(name, zs, zt, mask, fs)
    zs_bad, zt_bad = zs.clone(), zt.clone()
    zs_bad[~mask] = math.nan
    zt_bad[~mask] = math.inf
    zt_bad[~mask & (torch.arange(4) % 2 == 0)] = -math.inf
    dirty, g_dirty = run(name, zs_bad, zt_bad, mask, fs, weights=torch.where(mask, 1.0, math.nan).to(F64))
    assert dirty.loss.item() == clean.loss.item()
    assert torch.equal(g_dirty, g_clean)
    assert torch.all(g_clean[~mask] == 0) and g_clean[mask].abs().sum() > 0
    for k in clean.metrics:
        assert dirty.metrics[k].item() == clean.metrics[k].item()


@pytest.mark.parametrize("name", TOPK_NAMES)
def test_garbage_in_masked_topk_rows_is_ignored(name):
    zs, zt, mask, fs = batch(2)
    values, index = torch.log_softmax(zt, -1).topk(3, dim=-1)
    bad_v, bad_i = values.clone(), index.clone()
    bad_v[~mask], bad_i[~mask] = math.nan, 10**6  # out-of-range ids would make the gather raise
    outs = []
    for v, i in ((values, index), (bad_v, bad_i)):
        leaf = zs.clone().requires_grad_()
        x = DistillInputs(logits=leaf, logp_teacher_topk=v, index_teacher_topk=i, mask=mask, from_student=fs)
        out = DISTILL_LOSSES.get(name)(x, params(name))
        out.loss.backward()
        outs.append((out.loss.item(), leaf.grad))
    assert outs[0][0] == outs[1][0] and torch.equal(outs[0][1], outs[1][1])


@pytest.mark.parametrize("name", TOPK_NAMES)
def test_topk_form_with_k_equal_to_vocab_is_the_full_form(name):
    zs, zt, mask, fs = batch(3)
    p = params(name, temperature=1.7, chunk_size=2)
    values, index = torch.log_softmax(zt / 1.7, -1).topk(zt.shape[-1], dim=-1)  # teacher at the same τ
    full, g_full = run(name, zs, zt, mask, fs, p)
    leaf = zs.clone().requires_grad_()
    x = DistillInputs(logits=leaf, logp_teacher_topk=values, index_teacher_topk=index, mask=mask, from_student=fs)
    top = DISTILL_LOSSES.get(name)(x, p)
    top.loss.backward()
    assert top.loss.item() == pytest.approx(full.loss.item(), rel=1e-13, abs=1e-15)
    torch.testing.assert_close(leaf.grad, g_full, rtol=1e-12, atol=1e-15)


def test_taid_rejects_the_topk_form():
    zs, zt, mask, fs = batch()
    values, index = torch.log_softmax(zt, -1).topk(2, dim=-1)
    x = DistillInputs(logits=zs, logp_teacher_topk=values, index_teacher_topk=index, mask=mask)
    with pytest.raises(ValueError, match="full teacher logits"):
        DISTILL_LOSSES.get("taid")(x, params("taid"))


@pytest.mark.parametrize("mode", ["token_mean", "seq_mean_token_mean", "seq_mean_token_sum", "global_token_mean"])
def test_aggregation_modes_and_weights_go_through_ops_aggregate(mode):
    zs, zt, mask, fs = batch(4)
    g = torch.Generator().manual_seed(9)
    w = torch.rand(mask.shape, generator=g, dtype=F64)
    x = DistillInputs(logits=zs, logits_teacher=zt, mask=mask, weights=w, global_denominator=17.0)
    logp_t, logq = torch.log_softmax(zt, -1), torch.log_softmax(zs, -1)
    per_token = torch.where(mask, (logp_t.exp() * (logp_t - logq)).sum(-1), 0.0)  # KL(p_T‖q_θ)
    want = aggregate(per_token * w, mask, mode, 17.0)
    got = fkl_loss(x, FKLLossParams(loss_agg=mode))
    assert got.loss.item() == pytest.approx(want.item(), rel=1e-14, abs=1e-15)
    # the metric is the unweighted token mean of ℓ, whatever loss_agg is
    assert got.metrics["divergence"].item() == pytest.approx((per_token.sum() / mask.sum()).item(), rel=1e-14)


def test_global_token_mean_shards_sum_to_the_full_batch():
    # DP invariance: each rank divides its masked sum by the global token count
    zs, zt, mask, fs = batch(5, B=4)
    p = JSDLossParams(loss_agg="global_token_mean", beta=0.3)
    n = mask.sum().to(F64)
    whole = DISTILL_LOSSES.get("jsd")(DistillInputs(logits=zs, logits_teacher=zt, mask=mask, global_denominator=n), p)
    parts = sum(DISTILL_LOSSES.get("jsd")(
        DistillInputs(logits=zs[i:i + 2], logits_teacher=zt[i:i + 2], mask=mask[i:i + 2], global_denominator=n), p
    ).loss for i in (0, 2))
    assert parts.item() == pytest.approx(whole.loss.item(), rel=1e-14)
    tm = DISTILL_LOSSES.get("jsd")(DistillInputs(logits=zs, logits_teacher=zt, mask=mask),
                                   dataclasses.replace(p, loss_agg="token_mean"))
    assert tm.loss.item() == pytest.approx(whole.loss.item(), rel=1e-14)


@pytest.mark.parametrize("name", NAMES)
def test_metrics_detached_and_loss_is_scalar_and_all_masked_gives_zero(name):
    zs, zt, mask, fs = batch(6)
    out, _ = run(name, zs, zt, mask, fs)
    assert out.loss.dim() == 0 and "divergence" in out.metrics
    assert all(not v.requires_grad and v.dim() == 0 for v in out.metrics.values())
    none, g = run(name, zs, zt, torch.zeros_like(mask), fs)
    assert none.loss.item() == 0.0 and torch.all(g == 0)


@pytest.mark.parametrize("name", NAMES)
def test_zero_when_student_equals_teacher(name):
    zs, _, mask, fs = batch(7)
    out, g = run(name, zs, zs.clone(), mask, fs)
    assert out.loss.item() == pytest.approx(0.0, abs=1e-15)
    assert g.abs().max().item() < 1e-15


@pytest.mark.parametrize("name", NAMES)
def test_chunking_does_not_change_values_or_gradients(name):
    zs, zt, mask, fs = batch(8)
    a, ga = run(name, zs, zt, mask, fs, params(name, chunk_size=1))
    b, gb = run(name, zs, zt, mask, fs, params(name, chunk_size=1000))
    assert a.loss.item() == pytest.approx(b.loss.item(), rel=1e-14, abs=1e-16)
    torch.testing.assert_close(ga, gb, rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("name", NAMES)
def test_bf16_logits_are_upcast_and_close_to_fp64(name):
    zs, zt, mask, fs = batch(9)
    ref, _ = run(name, zs.to(torch.bfloat16).to(F64), zt.to(torch.bfloat16).to(F64), mask, fs)
    leaf = zs.to(torch.bfloat16).requires_grad_()
    x = DistillInputs(logits=leaf, logits_teacher=zt.to(torch.bfloat16), mask=mask, from_student=fs)
    out = DISTILL_LOSSES.get(name)(x, params(name))
    out.loss.backward()
    assert out.loss.dtype == torch.float32 and leaf.grad.dtype == torch.bfloat16
    assert out.loss.item() == pytest.approx(ref.loss.item(), rel=1e-5, abs=1e-6)  # fp32 math on the same inputs
