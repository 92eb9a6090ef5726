"""IPO: identity preference optimisation, a squared regression of the DPO margin onto 1/(2τ).

    h = ρ(y_w) − ρ(y_l),  ρ(y) = log π_θ(y) − log π_ref(y)
    ℓ = (h − 1/(2τ))²,   L = (1/B)·Σ_pairs ℓ      (minimum 0 at h = 1/(2τ); τ is ``beta``)

Unlike DPO the margin is pulled to a finite target, so deterministic preferences do not drive
ρ(y_l) → −∞. Ref: Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning from Human
Preferences", arXiv:2310.12036 eq. 17.
Deviations from the paper: ``length_normalize`` uses ρ(y)/|y| (TRL's IPO always does; TRL reports the
IPO authors confirmed that their results used it); off by default, as the paper's formula is on sums.
"""

from __future__ import annotations

from dataclasses import dataclass

from alignrl.objectives.preference_base import PreferenceInputs, check_beta, log_ratios, pair_metrics, per_token
from alignrl.registry import PREFERENCE_LOSSES
from alignrl.types import LossOut


@dataclass(frozen=True, kw_only=True, slots=True)
class IPOParams:
    beta: float = 0.1
    """τ > 0, the regularisation strength; the target margin is 1/(2τ) (5 at τ = 0.1)."""
    length_normalize: bool = False
    """Regress the per-token margin ρ(y_w)/|y_w| − ρ(y_l)/|y_l| instead (needs len_chosen/len_rejected)."""

    def __post_init__(self) -> None:
        check_beta("ipo", self.beta)


@PREFERENCE_LOSSES.register("ipo", params=IPOParams)
def ipo_loss(x: PreferenceInputs, p: IPOParams) -> LossOut:
    """L = (1/B)·Σ (h − 1/(2τ))²,  h = ρ(y_w) − ρ(y_l)  (or the per-token margin with length_normalize).

    Gradient: ∂L/∂log π_θ(y_w) = −∂L/∂log π_θ(y_l) = (2/B)·(h − 1/(2τ)) per pair (÷|y| when normalised).
    Args: x.logp_chosen, x.logp_rejected (B,) with grad; x.logp_ref_chosen, x.logp_ref_rejected (B,);
        x.len_chosen, x.len_rejected (B,) only with ``length_normalize``.
    Returns: LossOut(loss (), {reward_chosen, reward_rejected = τ·ρ, reward_margin, reward_accuracy}).
    Ref: arXiv:2310.12036 eq. 17.
    """
    rho_w, rho_l = log_ratios(x, "ipo")
    h_w, h_l = per_token(x, "ipo", rho_w, rho_l) if p.length_normalize else (rho_w, rho_l)
    loss = (h_w - h_l - 1.0 / (2.0 * p.beta)).square().mean()
    return LossOut(loss, pair_metrics(p.beta * rho_w, p.beta * rho_l))
