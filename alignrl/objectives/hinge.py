"""Hinge (SLiC) preference loss on the DPO margin, or on the raw log-likelihood margin (SLiC-HF).

    h = ρ(y_w) − ρ(y_l)  (ρ = log π_θ − log π_ref),  or  h = log π_θ(y_w) − log π_θ(y_l)  (reference_free)
    ℓ = max(0, 1 − β·h) = β·max(0, δ − h),  δ = 1/β,   L = (1/B)·Σ_pairs ℓ

Ref: Zhao et al. 2023, "SLiC-HF: Sequence Likelihood Calibration with Human Feedback", arXiv:2305.10425
eq. 1 (its rank-calibration term max(0, δ − log P(y⁺|x) + log P(y⁻|x))); the reference-normalised
margin is TRL DPOTrainer's ``loss_type="hinge"``.
Deviations from the paper: SLiC-HF adds a cross-entropy regulariser on reference outputs; here that is
a separate objective (sft) for the driver to add. The margin δ is written as 1/β so that β means the
same thing as in the rest of the DPO family.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignrl.objectives.preference_base import PreferenceInputs, check_beta, log_ratios, pair_metrics, require
from alignrl.registry import PREFERENCE_LOSSES
from alignrl.types import LossOut


@dataclass(frozen=True, kw_only=True, slots=True)
class HingeParams:
    beta: float = 0.1
    """β > 0; the hinge margin is δ = 1/β in log-ratio units."""
    reference_free: bool = False
    """Use log π_θ(y_w) − log π_θ(y_l) (SLiC-HF; TRL CPO ``hinge``) instead of the DPO margin."""

    def __post_init__(self) -> None:
        check_beta("hinge", self.beta)


@PREFERENCE_LOSSES.register("hinge", params=HingeParams)
def hinge_loss(x: PreferenceInputs, p: HingeParams) -> LossOut:
    """L = (1/B)·Σ max(0, 1 − β·h),  h = ρ(y_w) − ρ(y_l)  (or log π_θ(y_w) − log π_θ(y_l) if reference_free).

    Gradient: −β/B on log π_θ(y_w) and +β/B on log π_θ(y_l) for pairs with β·h < 1, zero otherwise.
    Args: x.logp_chosen, x.logp_rejected (B,) with grad; x.logp_ref_chosen, x.logp_ref_rejected (B,)
        unless ``reference_free``.
    Returns: LossOut(loss (), {reward_chosen, reward_rejected = β·ρ (β·log π_θ if reference_free),
        reward_margin, reward_accuracy}).
    Ref: arXiv:2305.10425 eq. 1.
    """
    if p.reference_free:
        h_w, h_l = require(x, "hinge", "logp_chosen", "logp_rejected")
    else:
        h_w, h_l = log_ratios(x, "hinge")
    loss = torch.relu(1.0 - p.beta * (h_w - h_l)).mean()
    return LossOut(loss, pair_metrics(p.beta * h_w, p.beta * h_l))
