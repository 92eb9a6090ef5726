"""Inputs, shared parameters and the per-token driver of the token-level distillation losses.

Every ``DISTILL_LOSSES`` entry has one signature, so drivers never branch on the name:

    loss(x: DistillInputs, p: Params) -> LossOut,   Params subclasses DistillParams

Notation: q_θ = softmax(z_S/τ) the student (the divergences registry's policy ``p``), p_T the teacher
(its anchor ``q``), D(q_θ‖p_T) a registered divergence evaluated per position t over the vocabulary.
Every loss is L = aggregate(w_t·ℓ_t, mask, loss_agg) with ℓ_t built from registered divergences
(``alignrl.divergences``; no divergence is re-derived here) and w_t optional per-token weights.

Teacher forms: full logits (B, T, V), or only its top-k log-probs with their token ids (B, T, k)
(vLLM ``logprobs=k``, stored offline logits); the top-k form coarse-grains both distributions onto
the k teacher tokens plus one tail bucket (``divergences.topk_full``) and equals the full form at k = V.

Masks: positions with mask False may hold any values, NaN and ±inf included (padding, a teacher row
that was never computed, an uninitialised top-k buffer). They contribute exactly 0 to the loss and
receive exactly 0 gradient: the per-token values are selected with ``where`` and the logits pass
through an identity whose backward zeroes masked rows, so a NaN there never reaches the parameters.
Deviations from the papers: none here (see each loss module).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch

from alignrl.divergences import topk_full
from alignrl.ops import AGGREGATION_MODES, aggregate, masked_mean
from alignrl.ops.reductions import AggregationMode
from alignrl.registry import DIVERGENCES
from alignrl.types import LossOut

DistillLoss = Callable[["DistillInputs", Any], LossOut]


@dataclass(frozen=True, kw_only=True, slots=True)
class DistillInputs:
    """One batch of B sequences for token-level distillation, aligned by position.

    Position t of every (B, T, ·) tensor is the distribution over the token at t + 1 (the caller shifts
    logits and masks, as for SFT). Give exactly one teacher form: ``logits_teacher`` or the top-k pair.
    """

    logits: torch.Tensor  # (B, T, V) student logits z_S, with grad; any float dtype
    mask: torch.Tensor  # (B, T) bool, True on positions that count (response tokens)
    logits_teacher: torch.Tensor | None = None  # (B, T, V) teacher logits z_T, no grad
    # top-k teacher form: log p_T(v) normalized over the full vocabulary (at the loss's temperature τ)
    logp_teacher_topk: torch.Tensor | None = None  # (B, T, k) float, k ≤ V
    index_teacher_topk: torch.Tensor | None = None  # (B, T, k) long token ids, distinct within a row
    weights: torch.Tensor | None = None  # (B, T) optional per-token weights w_t (constants)
    from_student: torch.Tensor | None = None  # (B,) bool, True where the row's response was sampled from
    # the student (on-policy, GKD's λ-fraction / DistiLLM-2's y_S), False for teacher or dataset responses
    global_denominator: torch.Tensor | float | None = None  # token count over all DP ranks and
    # micro-batches, for loss_agg = "global_token_mean"

    def __post_init__(self) -> None:
        if self.logits.dim() != 3:
            raise ValueError(f"DistillInputs.logits must be (B, T, V), got {tuple(self.logits.shape)}")
        bt, v = tuple(self.logits.shape[:2]), self.logits.shape[-1]
        _check_shape("mask", self.mask, bt)
        has_full, has_topk = self.logits_teacher is not None, self.logp_teacher_topk is not None
        if has_full == has_topk:
            raise ValueError("DistillInputs needs exactly one teacher form: logits_teacher or logp_teacher_topk")
        if has_full:
            _check_shape("logits_teacher", self.logits_teacher, tuple(self.logits.shape))
        else:
            if self.index_teacher_topk is None:
                raise ValueError("DistillInputs.logp_teacher_topk needs index_teacher_topk")
            k = self.logp_teacher_topk.shape[-1]
            _check_shape("logp_teacher_topk", self.logp_teacher_topk, (*bt, k))
            _check_shape("index_teacher_topk", self.index_teacher_topk, (*bt, k))
            if not 1 <= k <= v:
                raise ValueError(f"top-k width must be in [1, V={v}], got k={k}")
        if self.index_teacher_topk is not None and not has_topk:
            raise ValueError("DistillInputs.index_teacher_topk given without logp_teacher_topk")
        if self.weights is not None:
            _check_shape("weights", self.weights, bt)
        if self.from_student is not None:
            _check_shape("from_student", self.from_student, bt[:1])

    @property
    def has_full_teacher(self) -> bool:
        return self.logits_teacher is not None


def _check_shape(name: str, t: torch.Tensor, shape: tuple[int, ...]) -> None:
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"DistillInputs.{name} must have shape {tuple(shape)}, got {tuple(t.shape)}")


@dataclass(frozen=True, kw_only=True, slots=True)
class DistillParams:
    """Knobs every distillation loss has; each loss's Params subclasses this."""

    temperature: float = 1.0
    """τ > 0: both models' logits are divided by τ before the softmax (q_θ = softmax(z_S/τ)). No τ² factor
    is applied (TRL's convention); scale the loss coefficient by τ² for Hinton et al.'s gradient scale."""
    loss_agg: AggregationMode = "token_mean"
    """How per-token losses reduce to the loss (ops.aggregate); global_token_mean needs
    DistillInputs.global_denominator."""
    chunk_size: int = 256
    """Most positions per block of the vocabulary computation; bounds peak memory (divergences.base)."""
    topk_tail_min: float = 1e-12
    """Top-k form only: floor on both tail-bucket masses before the log (a teacher whose top-k holds all
    the mass in float precision would give log 0)."""

    def __post_init__(self) -> None:
        check_distill_params(self)


def check_distill_params(p: DistillParams) -> None:
    """Shared validation (subclasses with their own __post_init__ call this first)."""
    if not (p.temperature > 0 and math.isfinite(p.temperature)):
        raise ValueError(f"temperature must be a finite number > 0, got {p.temperature}")
    if p.loss_agg not in AGGREGATION_MODES:
        raise ValueError(f"loss_agg must be one of {', '.join(AGGREGATION_MODES)}, got {p.loss_agg!r}")
    if p.chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {p.chunk_size}")
    if not 0 < p.topk_tail_min < 1:
        raise ValueError(f"topk_tail_min must be in (0, 1), got {p.topk_tail_min}")


class _ZeroMaskedRowGrad(torch.autograd.Function):
    """Identity on (B, T, X); backward sets the gradient of rows with mask False to exactly 0."""

    @staticmethod
    def forward(ctx, x, mask):  # type: ignore[override]
        ctx.save_for_backward(mask)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (mask,) = ctx.saved_tensors
        return grad.masked_fill(~mask.unsqueeze(-1), 0.0), None  # masked_fill also replaces NaN


def guard_masked_rows(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x itself (no copy); when x needs grad, masked rows get 0 gradient even if their values are NaN.

    Cost: none in the forward pass; the backward writes one new gradient-sized tensor (out-of-place fill).
    """
    return _ZeroMaskedRowGrad.apply(x, mask) if x.requires_grad else x


def masked_topk_index(index: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Top-k token ids with masked rows replaced by 0, 1, …, k−1 (valid and distinct; garbage ids there
    would make the gather raise). (B, T, k) -> (B, T, k), a copy of k ids per position."""
    fill = torch.arange(index.shape[-1], device=index.device, dtype=index.dtype)
    return torch.where(mask.unsqueeze(-1), index, fill)


def divergence_per_token(name: str, x: DistillInputs, p: DistillParams, **knobs: Any) -> torch.Tensor:
    """D(q_θ‖p_T) per position from the divergences registry, exactly 0 at masked positions. (B, T).

    Args: name a registered divergence (``DIVERGENCES``) with the student as its policy and the teacher
    as its anchor; x the batch (full or top-k teacher); p the loss params (temperature, chunk_size,
    topk_tail_min); knobs the divergence's own parameters (e.g. beta=0.5).
    Returns: (B, T) in float32 (bf16/fp16/fp32 logits) or float64, differentiable in x.logits.
    """
    entry = DIVERGENCES.entry(name)
    dp = entry.params(chunk_size=p.chunk_size, **knobs)
    mask = x.mask.bool()
    z = guard_masked_rows(x.logits, mask)
    if x.logits_teacher is not None:
        d = entry.fn.full(z, guard_masked_rows(x.logits_teacher, mask), dp, temperature=p.temperature)
    else:
        lq = guard_masked_rows(x.logp_teacher_topk, mask)
        idx = masked_topk_index(x.index_teacher_topk, mask)
        d = topk_full(entry.fn, z, lq, idx, dp, temperature=p.temperature, tail_min=p.topk_tail_min)
    return torch.where(mask, d, torch.zeros_like(d))


def reduce_tokens(per_token: torch.Tensor, x: DistillInputs, p: DistillParams) -> torch.Tensor:
    """aggregate(w·ℓ, mask, p.loss_agg): ℓ (B, T) already 0 at masked positions; weights there ignored."""
    mask = x.mask.bool()
    if x.weights is not None:
        w = torch.where(mask, x.weights.to(per_token.dtype), torch.zeros_like(per_token))
        per_token = per_token * w
    return aggregate(per_token, mask, p.loss_agg, x.global_denominator)


def distill_loss_from_per_token(
    per_token: torch.Tensor, x: DistillInputs, p: DistillParams, **extra_metrics: torch.Tensor,
) -> LossOut:
    """LossOut(aggregate(w·ℓ), {divergence: unweighted token mean of ℓ over the mask, **extra}), detached."""
    metrics = {"divergence": masked_mean(per_token.detach(), x.mask.bool())}
    metrics.update({k: v.detach() for k, v in extra_metrics.items()})
    return LossOut(reduce_tokens(per_token, x, p), metrics)
