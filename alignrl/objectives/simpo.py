"""SimPO: reference-free, length-normalised preference loss with a target reward margin γ.

    r(y) = (β/|y|)·log π_θ(y)                       (average log-likelihood as the implicit reward)
    ℓ = −(1−ε)·log σ(r(y_w) − r(y_l) − γ) − ε·log σ(−(r(y_w) − r(y_l) − γ)),   L = (1/B)·Σ_pairs ℓ

No reference model is read. Ref: Meng, Xia & Chen 2024, "SimPO: Simple Preference Optimization with a
Reference-Free Reward", arXiv:2405.14734 eq. 6 (verify eq. no.); label smoothing ε as in the authors'
SimPOTrainer (github.com/princeton-nlp/SimPO, scripts/simpo_trainer.py) and TRL CPOTrainer's
``loss_type="simpo"``.
Deviations from the paper: none (ε = 0 is the paper's loss). Defaults β = 2.0, γ = 0.5 are the authors'
SimPOConfig defaults (beta = 2.0, gamma_beta_ratio = 0.25); their configs tune both per model.
"""

from __future__ import annotations

from dataclasses import dataclass

from alignrl.objectives.preference_base import (
    PreferenceInputs,
    check_beta,
    check_smoothing,
    pair_metrics,
    per_token,
    require,
    sigmoid_loss,
)
from alignrl.registry import PREFERENCE_LOSSES
from alignrl.types import LossOut


@dataclass(frozen=True, kw_only=True, slots=True)
class SimPOParams:
    beta: float = 2.0
    """β > 0, scale of the length-normalised reward (authors' default 2.0)."""
    gamma: float = 0.5
    """γ, target reward margin in reward units (authors' default β·0.25 = 0.5); TRL's ``simpo_gamma``."""
    label_smoothing: float = 0.0
    """ε ∈ [0, 0.5], cDPO-style label smoothing; 0 is the paper's loss."""

    def __post_init__(self) -> None:
        check_beta("simpo", self.beta)
        check_smoothing("simpo", self.label_smoothing)


@PREFERENCE_LOSSES.register("simpo", params=SimPOParams)
def simpo_loss(x: PreferenceInputs, p: SimPOParams) -> LossOut:
    """L = −(1/B)·Σ log σ((β/|y_w|)·log π_θ(y_w) − (β/|y_l|)·log π_θ(y_l) − γ)   (ε = 0).

    Gradient (ε = 0): ∂L/∂log π_θ(y_w) = −(β/(B·|y_w|))·σ(−z), ∂L/∂log π_θ(y_l) = +(β/(B·|y_l|))·σ(−z).
    Args: x.logp_chosen, x.logp_rejected (B,) with grad; x.len_chosen, x.len_rejected (B,) token counts.
        Reference fields are ignored.
    Returns: LossOut(loss (), {reward_chosen, reward_rejected = (β/|y|)·log π_θ(y), reward_margin,
        reward_accuracy}).
    Ref: arXiv:2405.14734 eq. 6.
    """
    lw, ll = require(x, "simpo", "logp_chosen", "logp_rejected")
    avg_w, avg_l = per_token(x, "simpo", lw, ll)
    r_w, r_l = p.beta * avg_w, p.beta * avg_l
    loss = sigmoid_loss(r_w - r_l - p.gamma, p.label_smoothing).mean()
    return LossOut(loss, pair_metrics(r_w, r_l))
