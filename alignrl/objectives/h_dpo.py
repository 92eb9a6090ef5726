"""H-DPO: DPO with a controllable entropy term (sharper policies for α < 1).

Writing KL(π‖π_ref) = −H(π) + CE(π, π_ref) and weighting the entropy by α gives the target
π* ∝ (π_ref·exp(r/β))^{1/α}, i.e. the implicit reward r(y) = β·[α·log π_θ(y) − log π_ref(y)] + const:

    z = β·[α·log π_θ(y_w) − log π_ref(y_w)] − β·[α·log π_θ(y_l) − log π_ref(y_l)]
    ℓ = −log σ(z),   L = (1/B)·Σ_pairs ℓ          (α = 1: DPO; α < 1: lower entropy, more mode seeking)

Ref: Omura, Fujita & Kataoka 2024, "Entropy Controllable Direct Preference Optimization",
arXiv:2411.07595 §4 (the H-DPO objective and loss; verify eq. no.).
Deviations from the paper: none in the loss; the default α = 0.9 is a placeholder inside the paper's
α < 1 regime, not a value taken from the paper (verify).
"""

from __future__ import annotations

from dataclasses import dataclass

from alignrl.objectives.preference_base import PreferenceInputs, check_beta, pair_metrics, require, sigmoid_loss
from alignrl.registry import PREFERENCE_LOSSES
from alignrl.types import LossOut


@dataclass(frozen=True, kw_only=True, slots=True)
class HDPOParams:
    beta: float = 0.1
    """β > 0, as in DPO."""
    alpha: float = 0.9
    """α > 0, weight of the policy's entropy in the constraint; 1 is DPO, < 1 sharpens (placeholder; verify)."""

    def __post_init__(self) -> None:
        check_beta("h_dpo", self.beta)
        if not self.alpha > 0:
            raise ValueError(f"h_dpo: alpha must be > 0, got {self.alpha}")


@PREFERENCE_LOSSES.register("h_dpo", params=HDPOParams)
def h_dpo_loss(x: PreferenceInputs, p: HDPOParams) -> LossOut:
    """L = −(1/B)·Σ log σ(β·[α·log π_θ(y_w) − log π_ref(y_w)] − β·[α·log π_θ(y_l) − log π_ref(y_l)]).

    Gradient: ∂L/∂log π_θ(y_w) = −∂L/∂log π_θ(y_l) = −(α·β/B)·σ(−z) per pair.
    Args: x.logp_chosen, x.logp_rejected (B,) with grad; x.logp_ref_chosen, x.logp_ref_rejected (B,).
    Returns: LossOut(loss (), {reward_chosen, reward_rejected = β·ρ (the DPO reward, comparable across
        losses), reward_margin, reward_accuracy, hdpo_margin = mean z/β}).
    Ref: arXiv:2411.07595 §4.
    """
    lw, ll, rw, rl = require(x, "h_dpo", "logp_chosen", "logp_rejected", "logp_ref_chosen", "logp_ref_rejected")
    margin = (p.alpha * lw - rw) - (p.alpha * ll - rl)
    loss = sigmoid_loss(p.beta * margin).mean()
    return LossOut(loss, pair_metrics(p.beta * (lw - rw), p.beta * (ll - rl), hdpo_margin=margin))
