"""Token-level KD losses: one registered divergence per position, aggregated over the response tokens.

    ℓ_t = D(q_θ(·|y_<t) ‖ p_T(·|y_<t)),   q_θ = softmax(z_S/τ), p_T = softmax(z_T/τ)
    L   = aggregate(w_t·ℓ_t, mask, loss_agg)

| name     | ℓ_t (teacher p_T, student q_θ)                               | divergences entry            |
|----------|--------------------------------------------------------------|------------------------------|
| fkl      | KL(p_T‖q_θ)                                                  | forward_kl                   |
| rkl      | KL(q_θ‖p_T)                                                  | reverse_kl                   |
| jsd      | β·KL(p_T‖M) + (1−β)·KL(q_θ‖M), M = β·p_T + (1−β)·q_θ         | generalized_jsd (0 < β < 1)  |
|          | β = 0: KL(p_T‖q_θ),  β = 1: KL(q_θ‖p_T)  (GKD/TRL endpoints)  | forward_kl / reverse_kl      |
| tvd      | ½·Σ_v |p_T(v) − q_θ(v)|                                       | tv                           |
| skew_kl  | KL(p_T ‖ α·p_T + (1−α)·q_θ)                                  | skew_kl                      |
| skew_rkl | KL(q_θ ‖ (1−α)·p_T + α·q_θ)                                  | skew_reverse_kl              |
| akl      | w·KL(p_T‖q_θ) + (1−w)·KL(q_θ‖p_T), w = sg(g_head/(g_head+g_tail)) | akl                     |

The data regime (teacher / dataset / student-generated responses, GKD's λ) is the loop's choice;
these losses only see the positions they are given.
Refs: Hinton et al. 2015, arXiv:1503.02531 (FKL with temperature); MiniLLM, Gu et al. 2024,
arXiv:2306.08543 (RKL); GKD, Agarwal et al. 2024, arXiv:2306.13649 eq. 1 and §3 (JSD(β), TVD);
DistillSpec, Zhou et al. 2024, arXiv:2310.08461 (TVD); DistiLLM, Ko et al. 2024, arXiv:2402.03898 §3
(skew KL / skew RKL, α = 0.1); AKL, Wu et al. 2024, arXiv:2404.02657 §4 (μ = 0.5).
Deviations from the papers: none in the formulas (see divergences/ for each family's). The JSD(β)
endpoints β ∈ {0, 1}, where eq. 1 is identically 0, are given TRL's meaning (FKL, RKL), i.e. the
limits of JSD(β)/β and JSD(β)/(1−β). Temperature divides both models' logits and no τ² factor is applied.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignrl.objectives.distill_base import (
    DistillInputs,
    DistillParams,
    check_distill_params,
    distill_loss_from_per_token,
    divergence_per_token,
)
from alignrl.registry import DISTILL_LOSSES
from alignrl.types import LossOut


@dataclass(frozen=True, kw_only=True, slots=True)
class FKLLossParams(DistillParams):
    """Forward KL has no knobs beyond the shared ones."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RKLLossParams(DistillParams):
    """Reverse KL has no knobs beyond the shared ones."""


@dataclass(frozen=True, kw_only=True, slots=True)
class JSDLossParams(DistillParams):
    beta: float = 0.5
    """β ∈ [0, 1], the teacher's weight in M = β·p_T + (1−β)·q_θ (GKD eq. 1; TRL GKDConfig.beta).
    0 gives forward KL, 1 reverse KL (the GKD/TRL endpoint convention)."""

    def __post_init__(self) -> None:
        check_distill_params(self)
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"jsd beta must be in [0, 1], got {self.beta}")


@dataclass(frozen=True, kw_only=True, slots=True)
class TVDLossParams(DistillParams):
    """TVD has no knobs beyond the shared ones."""


@dataclass(frozen=True, kw_only=True, slots=True)
class _SkewLossParams(DistillParams):
    alpha: float = 0.1
    """Skew α ∈ [0, 1): the share of the divergence's first argument mixed into its second (DistiLLM 0.1)."""

    def __post_init__(self) -> None:
        check_distill_params(self)
        if not 0.0 <= self.alpha < 1.0:
            raise ValueError(f"skew alpha must be in [0, 1), got {self.alpha}")


@dataclass(frozen=True, kw_only=True, slots=True)
class SkewKLLossParams(_SkewLossParams):
    """Skew forward KL: KL(p_T ‖ α·p_T + (1−α)·q_θ)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class SkewRKLLossParams(_SkewLossParams):
    """Skew reverse KL: KL(q_θ ‖ (1−α)·p_T + α·q_θ)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class AKLLossParams(DistillParams):
    mu: float = 0.5
    """Head mass μ ∈ [0, 1]: teacher ranks with cumulative probability ≤ μ (and the top-1) form the head."""

    def __post_init__(self) -> None:
        check_distill_params(self)
        if not 0.0 <= self.mu <= 1.0:
            raise ValueError(f"akl mu must be in [0, 1], got {self.mu}")


def jsd_per_token(x: DistillInputs, p: DistillParams, beta: float) -> torch.Tensor:
    """JSD(β)(p_T‖q_θ) per position with the GKD/TRL endpoints (β = 0 → FKL, β = 1 → RKL). (B, T)."""
    if beta == 0.0:
        return divergence_per_token("forward_kl", x, p)
    if beta == 1.0:
        return divergence_per_token("reverse_kl", x, p)
    return divergence_per_token("generalized_jsd", x, p, beta=beta)


@DISTILL_LOSSES.register("fkl", params=FKLLossParams)
def fkl_loss(x: DistillInputs, p: FKLLossParams) -> LossOut:
    """ℓ_t = KL(p_T‖q_θ) = Σ_v p_T(v)·(log p_T(v) − log q_θ(v))   (Hinton et al. 2015; GKD §3).

    Args: x.logits (B, T, V) student, with grad; x.logits_teacher (B, T, V) or the top-k pair (B, T, k);
        x.mask (B, T) bool; x.weights (B, T) optional. Returns: LossOut(loss (), {divergence}).
    """
    return distill_loss_from_per_token(divergence_per_token("forward_kl", x, p), x, p)


@DISTILL_LOSSES.register("rkl", params=RKLLossParams)
def rkl_loss(x: DistillInputs, p: RKLLossParams) -> LossOut:
    """ℓ_t = KL(q_θ‖p_T) = Σ_v q_θ(v)·(log q_θ(v) − log p_T(v))   (MiniLLM arXiv:2306.08543, token level).

    Args: as fkl_loss. Returns: LossOut(loss (), {divergence}).
    """
    return distill_loss_from_per_token(divergence_per_token("reverse_kl", x, p), x, p)


@DISTILL_LOSSES.register("jsd", params=JSDLossParams)
def jsd_loss(x: DistillInputs, p: JSDLossParams) -> LossOut:
    """ℓ_t = β·KL(p_T‖M) + (1−β)·KL(q_θ‖M),  M = β·p_T + (1−β)·q_θ   (GKD arXiv:2306.13649 eq. 1).

    β = 0 is KL(p_T‖q_θ) and β = 1 is KL(q_θ‖p_T) (TRL GKDTrainer.generalized_jsd_loss's endpoints).
    Args: as fkl_loss. Returns: LossOut(loss (), {divergence}).
    """
    return distill_loss_from_per_token(jsd_per_token(x, p, p.beta), x, p)


@DISTILL_LOSSES.register("tvd", params=TVDLossParams)
def tvd_loss(x: DistillInputs, p: TVDLossParams) -> LossOut:
    """ℓ_t = ½·Σ_v |p_T(v) − q_θ(v)|   (GKD §3; DistillSpec arXiv:2310.08461: 1 − TVD = acceptance rate).

    Args: as fkl_loss. Returns: LossOut(loss (), {divergence}) with ℓ_t ∈ [0, 1].
    """
    return distill_loss_from_per_token(divergence_per_token("tv", x, p), x, p)


@DISTILL_LOSSES.register("skew_kl", params=SkewKLLossParams)
def skew_kl_loss(x: DistillInputs, p: SkewKLLossParams) -> LossOut:
    """ℓ_t = SKL_α = KL(p_T ‖ α·p_T + (1−α)·q_θ)   (DistiLLM arXiv:2402.03898 §3; α = 0 is fkl).

    Args: as fkl_loss. Returns: LossOut(loss (), {divergence}) with ℓ_t ≤ −log α.
    """
    return distill_loss_from_per_token(divergence_per_token("skew_kl", x, p, alpha=p.alpha), x, p)


@DISTILL_LOSSES.register("skew_rkl", params=SkewRKLLossParams)
def skew_rkl_loss(x: DistillInputs, p: SkewRKLLossParams) -> LossOut:
    """ℓ_t = SRKL_α = KL(q_θ ‖ (1−α)·p_T + α·q_θ)   (DistiLLM arXiv:2402.03898 §3; α = 0 is rkl).

    Gradients flow through the mixture as well (divergences/skew.py). Args: as fkl_loss.
    Returns: LossOut(loss (), {divergence}) with ℓ_t ≤ −log α.
    """
    return distill_loss_from_per_token(divergence_per_token("skew_reverse_kl", x, p, alpha=p.alpha), x, p)


@DISTILL_LOSSES.register("akl", params=AKLLossParams)
def akl_loss(x: DistillInputs, p: AKLLossParams) -> LossOut:
    """ℓ_t = w·KL(p_T‖q_θ) + (1−w)·KL(q_θ‖p_T),  w = sg(g_head/(g_head + g_tail))   (arXiv:2404.02657 §4).

    g_head = Σ_{v∈H}|p_T(v) − q_θ(v)|, g_tail the same over the rest, H = the teacher's top ranks with
    cumulative mass ≤ μ plus its top-1 (the authors' code). In the top-k form the head is chosen among the
    k teacher tokens and the tail bucket. Args: as fkl_loss. Returns: LossOut(loss (), {divergence}).
    """
    return distill_loss_from_per_token(divergence_per_token("akl", x, p, mu=p.mu), x, p)
