"""CoPG: contrastive policy gradient on pairs of responses with arbitrary scalar rewards.

For two responses y, y′ to the same prompt from any behaviour distribution, with the regularised
reward R_θ(y) = r(y) − β·ρ(y), ρ(y) = log π_θ(y) − log π_ref(y), CoPG ascends

    g = (R_θ(y) − R_θ(y′))·(∇log π_θ(y) − ∇log π_θ(y′))

without importance weights (the other response is the baseline). It is the negative gradient of

    ℓ = (r(y) − r(y′) − β·[ρ(y) − ρ(y′)])² / (2β),   L = (1/B)·Σ_pairs ℓ

Replacing r(y) − r(y′) by the constant β/(2τ) on ordered pairs gives (β/2)·IPO(τ); CoPG pairs need not be ordered.
Ref: Flet-Berliac et al. 2024, "Contrastive Policy Gradient: Aligning LLMs on sequence-level scores in
a supervised-friendly fashion", arXiv:2406.19185 §3 (the CoPG update; verify eq. no.).
Deviations from the paper: the squared loss is divided by 2β so that −∇L equals the CoPG update g
exactly (METHODS.md writes the undivided square, whose gradient is 2β·(−g)).
"""

from __future__ import annotations

from dataclasses import dataclass

from alignrl.objectives.preference_base import PreferenceInputs, check_beta, log_ratios, pair_metrics, require
from alignrl.registry import PREFERENCE_LOSSES
from alignrl.types import LossOut


@dataclass(frozen=True, kw_only=True, slots=True)
class CoPGParams:
    beta: float = 0.1
    """β > 0, KL-to-π_ref strength in R_θ = r − β·ρ."""

    def __post_init__(self) -> None:
        check_beta("copg", self.beta)


@PREFERENCE_LOSSES.register("copg", params=CoPGParams)
def copg_loss(x: PreferenceInputs, p: CoPGParams) -> LossOut:
    """L = (1/B)·Σ (r(y) − r(y′) − β·[ρ(y) − ρ(y′)])² / (2β);  −∂L/∂log π_θ(y) = (R_θ(y) − R_θ(y′))/B.

    Args: x.logp_chosen, x.logp_rejected (B,) log π_θ of y and y′, with grad; x.logp_ref_chosen,
        x.logp_ref_rejected (B,); x.reward_chosen, x.reward_rejected (B,) r(y), r(y′) (any scale).
    Returns: LossOut(loss (), {reward_chosen, reward_rejected = β·ρ (implicit), reward_margin,
        reward_accuracy, regularized_reward_gap = mean R_θ(y) − R_θ(y′)}).
    Ref: arXiv:2406.19185 §3.
    """
    rho_w, rho_l = log_ratios(x, "copg")
    r_w, r_l = require(x, "copg", "reward_chosen", "reward_rejected")
    gap = (r_w - p.beta * rho_w) - (r_l - p.beta * rho_l)  # R_θ(y) − R_θ(y′)
    loss = (gap.square() / (2.0 * p.beta)).mean()
    return LossOut(loss, pair_metrics(p.beta * rho_w, p.beta * rho_l, regularized_reward_gap=gap))
