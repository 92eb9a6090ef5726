"""GKD: generalized knowledge distillation (on-policy distillation with JSD(β)).

GKD's objective mixes two data regimes with one token-level divergence D:

    L_GKD = (1 − λ)·E_{(x,y)∼data}[D̄(p_T‖q_θ)(y|x)] + λ·E_{x∼data, y∼q_θ(·|x)}[D̄(p_T‖q_θ)(y|x)]
    D̄(y|x) = (1/|y|)·Σ_t D(p_T(·|y_<t, x) ‖ q_θ(·|y_<t, x)),   D = JSD(β) (eq. 1)

What is where:
- loop (data regime): per batch, with probability λ (``lmbda``) the responses are sampled from the
  current student (on-policy; gradients are not taken through the sampling, GKD §3.1), otherwise they
  come from the dataset (or from the teacher, TRL's ``seq_kd``); the sampling temperature of those
  generations is the rollout's setting. The loop reads ``GKDParams.lmbda``; the loss never does.
- loss (this module): D = JSD(β) at every response position of whatever batch it is given, with
  logits divided by ``temperature`` inside the divergence, aggregated by ``loss_agg``.
GKD with D ∈ {FKL, RKL, TVD} is β = 0 / β = 1 here, or the ``tvd`` loss, with the same loop.
Ref: Agarwal et al. 2024, "On-Policy Distillation of Language Models: Learning from Self-Generated
Mistakes" (GKD), ICLR 2024, arXiv:2306.13649 eq. 1 (JSD(β)), §3.1 and Algorithm 1 (λ); TRL 1.16
``trl.experimental.gkd.GKDTrainer`` (``lmbda``, ``beta``, ``seq_kd``; ``generalized_jsd_loss``).
Deviations from the paper: β ∈ {0, 1} follow TRL (FKL, RKL) where eq. 1 is identically 0. TRL's trainer
computes the loss at τ = 1 and uses its ``temperature`` for sampling only; here ``temperature`` is the
loss's (default 1, i.e. TRL's trainer) and sampling is configured in the rollout.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignrl.objectives.distill_base import (
    DistillInputs,
    DistillParams,
    check_distill_params,
    distill_loss_from_per_token,
)
from alignrl.objectives.kd import jsd_per_token
from alignrl.registry import DISTILL_LOSSES
from alignrl.types import LossOut


@dataclass(frozen=True, kw_only=True, slots=True)
class GKDParams(DistillParams):
    beta: float = 0.5
    """β ∈ [0, 1] of JSD(β): the teacher's weight in M = β·p_T + (1−β)·q_θ; 0 = FKL, 1 = RKL (TRL GKDConfig.beta)."""
    lmbda: float = 0.5
    """λ ∈ [0, 1], read by the loop only: the probability that a batch's responses are sampled from the
    student (on-policy) rather than taken from the dataset (TRL GKDConfig.lmbda, default 0.5)."""

    def __post_init__(self) -> None:
        check_distill_params(self)
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"gkd beta must be in [0, 1], got {self.beta}")
        if not 0.0 <= self.lmbda <= 1.0:
            raise ValueError(f"gkd lmbda must be in [0, 1], got {self.lmbda}")


@DISTILL_LOSSES.register("gkd", params=GKDParams)
def gkd_loss(x: DistillInputs, p: GKDParams) -> LossOut:
    """ℓ_t = JSD(β)(p_T‖q_θ) = β·KL(p_T‖M) + (1−β)·KL(q_θ‖M),  M = β·p_T + (1−β)·q_θ   (arXiv:2306.13649 eq. 1).

    Same per-token loss as ``jsd``; λ is applied by the loop through the data it passes in.
    Args: x.logits (B, T, V) student, with grad; x.logits_teacher (B, T, V) or the top-k pair;
        x.mask (B, T) bool; x.weights (B, T) optional; x.from_student (B,) optional, for the metric.
    Returns: LossOut(loss (), {divergence: token mean of JSD(β), and student_data_frac: fraction of rows
        sampled from the student when x.from_student is given}).
    """
    extra = {}
    if x.from_student is not None:
        extra["student_data_frac"] = x.from_student.to(torch.float32).mean()
    return distill_loss_from_per_token(jsd_per_token(x, p, p.beta), x, p, **extra)
