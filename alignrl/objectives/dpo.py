"""DPO with a sigmoid (Bradley–Terry) loss, its conservative variant (cDPO) and robust DPO (rDPO).

    h = ρ(y_w) − ρ(y_l),  ρ(y) = log π_θ(y) − log π_ref(y)
    dpo:         ℓ = −log σ(β·h)
    cdpo:        ℓ = −(1−ε)·log σ(β·h) − ε·log σ(−β·h)                  (labels flipped with prob. ε; BCE to 1−ε)
    robust_dpo:  ℓ = [−(1−ε)·log σ(β·h) + ε·log σ(−β·h)] / (1 − 2ε)       (unbiased under flip rate ε)
    L = (1/B)·Σ_pairs ℓ

Refs: Rafailov et al. 2023, arXiv:2305.18290 eq. 7 (DPO) and §4 (its gradient); E. Mitchell 2023,
"A note on DPO with noisy preferences & relationship to IPO", ericmitchell.ai/cdpo.pdf eq. 3 (cDPO);
Chowdhury, Kini & Natarajan 2024, "Provably Robust DPO", arXiv:2403.00409 §3 (rDPO loss).
Deviations from the papers: ``length_normalize`` on dpo replaces ρ by ρ/|y| (TRL's ``sigmoid_norm``);
it is off by default and not in the DPO paper.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from alignrl.objectives.preference_base import (
    PreferenceInputs,
    check_beta,
    check_smoothing,
    log_ratios,
    pair_metrics,
    per_token,
    sigmoid_loss,
)
from alignrl.registry import PREFERENCE_LOSSES
from alignrl.types import LossOut


@dataclass(frozen=True, kw_only=True, slots=True)
class DPOParams:
    beta: float = 0.1
    """β > 0, strength of the implicit KL(π_θ‖π_ref) constraint (the DPO paper's 0.1 on most tasks)."""
    length_normalize: bool = False
    """Use ρ(y)/|y| in the margin (needs len_chosen/len_rejected); TRL's ``sigmoid_norm``."""

    def __post_init__(self) -> None:
        check_beta("dpo", self.beta)


@dataclass(frozen=True, kw_only=True, slots=True)
class CDPOParams:
    beta: float = 0.1
    """β > 0, as in DPO."""
    label_smoothing: float = 0.1
    """ε ∈ [0, 0.5], the assumed probability that a preference label is flipped; ε = 0 is DPO."""

    def __post_init__(self) -> None:
        check_beta("cdpo", self.beta)
        check_smoothing("cdpo", self.label_smoothing)


@dataclass(frozen=True, kw_only=True, slots=True)
class RobustDPOParams:
    beta: float = 0.1
    """β > 0, as in DPO."""
    label_smoothing: float = 0.1
    """ε ∈ [0, 0.5), the label flip rate (TRL documents 0.1 as the paper's typical value); ε = 0 is DPO."""

    def __post_init__(self) -> None:
        check_beta("robust_dpo", self.beta)
        check_smoothing("robust_dpo", self.label_smoothing, closed=False)


def _metrics(beta: float, rho_w: torch.Tensor, rho_l: torch.Tensor) -> dict:
    return pair_metrics(beta * rho_w, beta * rho_l)


@PREFERENCE_LOSSES.register("dpo", params=DPOParams)
def dpo_loss(x: PreferenceInputs, p: DPOParams) -> LossOut:
    """L = −(1/B)·Σ log σ(β·[ρ(y_w) − ρ(y_l)]),  ρ(y) = log π_θ(y) − log π_ref(y).

    Gradient (DPO §4): ∂L/∂log π_θ(y_w) = −∂L/∂log π_θ(y_l) = −(β/B)·σ(−β·h) per pair.
    Args: x.logp_chosen, x.logp_rejected (B,) with grad; x.logp_ref_chosen, x.logp_ref_rejected (B,);
        x.len_chosen, x.len_rejected (B,) only with ``length_normalize``.
    Returns: LossOut(loss (), {reward_chosen, reward_rejected = β·ρ, reward_margin, reward_accuracy}).
    Ref: arXiv:2305.18290 eq. 7.
    """
    rho_w, rho_l = log_ratios(x, "dpo")
    h_w, h_l = per_token(x, "dpo", rho_w, rho_l) if p.length_normalize else (rho_w, rho_l)
    loss = sigmoid_loss(p.beta * (h_w - h_l)).mean()
    return LossOut(loss, _metrics(p.beta, rho_w, rho_l))


@PREFERENCE_LOSSES.register("cdpo", params=CDPOParams)
def cdpo_loss(x: PreferenceInputs, p: CDPOParams) -> LossOut:
    """L = (1/B)·Σ [−(1−ε)·log σ(β·h) − ε·log σ(−β·h)],  h = ρ(y_w) − ρ(y_l).

    Gradient: ∂L/∂log π_θ(y_w) = −∂L/∂log π_θ(y_l) = −(β/B)·(σ(−β·h) − ε): the push stops at
    σ(β·h) = 1 − ε instead of growing the margin without bound.
    Args: x.logp_chosen, x.logp_rejected (B,) with grad; x.logp_ref_chosen, x.logp_ref_rejected (B,).
    Returns: LossOut(loss (), {reward_chosen, reward_rejected = β·ρ, reward_margin, reward_accuracy}).
    Ref: Mitchell 2023, ericmitchell.ai/cdpo.pdf eq. 3.
    """
    rho_w, rho_l = log_ratios(x, "cdpo")
    loss = sigmoid_loss(p.beta * (rho_w - rho_l), p.label_smoothing).mean()
    return LossOut(loss, _metrics(p.beta, rho_w, rho_l))


@PREFERENCE_LOSSES.register("robust_dpo", params=RobustDPOParams)
def robust_dpo_loss(x: PreferenceInputs, p: RobustDPOParams) -> LossOut:
    """L = (1/B)·Σ [−(1−ε)·log σ(β·h) + ε·log σ(−β·h)] / (1 − 2ε),  h = ρ(y_w) − ρ(y_l).

    The de-biased BCE: its expectation under labels flipped with probability ε equals the clean DPO loss.
    Gradient: ∂L/∂log π_θ(y_w) = −(β/B)·[(1−ε)·σ(−β·h) + ε·σ(β·h)] / (1 − 2ε) per pair.
    Args: x.logp_chosen, x.logp_rejected (B,) with grad; x.logp_ref_chosen, x.logp_ref_rejected (B,).
    Returns: LossOut(loss (), {reward_chosen, reward_rejected = β·ρ, reward_margin, reward_accuracy}).
    Ref: Chowdhury et al. 2024, arXiv:2403.00409 §3 (rDPO).
    """
    rho_w, rho_l = log_ratios(x, "robust_dpo")
    z, eps = p.beta * (rho_w - rho_l), p.label_smoothing
    loss = ((-(1.0 - eps) * F.logsigmoid(z) + eps * F.logsigmoid(-z)) / (1.0 - 2.0 * eps)).mean()
    return LossOut(loss, _metrics(p.beta, rho_w, rho_l))
