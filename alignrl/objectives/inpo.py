"""INPO: iterative Nash policy optimisation (online mirror descent against the previous iterate).

Iteration t solves π_{t+1} ∝ π_t^{1−ητ}·π_ref^{ητ}·exp(η·P(y ≻ π_t)) by regression on pairs
(y_w ≻ y_l) sampled from π_t and labelled by a preference oracle:

    h = [log π_θ(y_w) − log π_θ(y_l)] − ητ·[log π_ref(y_w) − log π_ref(y_l)] − (1−ητ)·[log π_t(y_w) − log π_t(y_l)]
    ℓ = (h − η/2)²,   L = (1/B)·Σ_pairs ℓ

ητ = 1 drops π_t and gives IPO with τ_IPO = 1/η (target η/2 = 1/(2τ_IPO)).
Ref: Zhang et al. 2024, "Iterative Nash Policy Optimization: Aligning LLMs with General Preferences via
No-Regret Learning", arXiv:2407.00617 §4 (the INPO loss and Algorithm 1; verify eq. no.).
Deviations from the paper: none in the loss; the outer loop (sample from π_t, label, refresh π_t) is
the driver's, with π_t kept by an anchor (anchors/tr_dpo.py with α = 1). Defaults η = 10, τ = 0.05
(ητ = ½) are placeholders, not values from the paper (verify).
"""

from __future__ import annotations

from dataclasses import dataclass

from alignrl.objectives.preference_base import PreferenceInputs, pair_metrics, require
from alignrl.registry import PREFERENCE_LOSSES
from alignrl.types import LossOut


@dataclass(frozen=True, kw_only=True, slots=True)
class INPOParams:
    eta: float = 10.0
    """η > 0, the mirror-descent step size; the regression target is η/2 (placeholder; verify)."""
    tau: float = 0.05
    """τ ≥ 0, KL-to-π_ref strength; ητ ∈ [0, 1] is π_ref's share of the mixed reference (placeholder)."""

    def __post_init__(self) -> None:
        if not self.eta > 0:
            raise ValueError(f"inpo: eta must be > 0, got {self.eta}")
        if not 0.0 <= self.eta * self.tau <= 1.0:
            raise ValueError(f"inpo: eta·tau must be in [0, 1], got {self.eta * self.tau}")


@PREFERENCE_LOSSES.register("inpo", params=INPOParams)
def inpo_loss(x: PreferenceInputs, p: INPOParams) -> LossOut:
    """L = (1/B)·Σ (h − η/2)²,  h = Δlog π_θ − ητ·Δlog π_ref − (1−ητ)·Δlog π_t,  Δ = (y_w) − (y_l).

    Gradient: ∂L/∂log π_θ(y_w) = −∂L/∂log π_θ(y_l) = (2/B)·(h − η/2) per pair.
    Args: x.logp_chosen, x.logp_rejected (B,) with grad; x.logp_ref_chosen, x.logp_ref_rejected (B,);
        x.logp_prev_chosen, x.logp_prev_rejected (B,) log-probs under the previous iterate π_t.
    Returns: LossOut(loss (), {reward_chosen, reward_rejected = (1/η)·(log π_θ − log π_ref),
        reward_margin, reward_accuracy}).
    Ref: arXiv:2407.00617 §4.
    """
    lw, ll, rw, rl, tw, tl = require(
        x, "inpo", "logp_chosen", "logp_rejected", "logp_ref_chosen", "logp_ref_rejected",
        "logp_prev_chosen", "logp_prev_rejected",
    )
    mix = p.eta * p.tau
    h = (lw - ll) - mix * (rw - rl) - (1.0 - mix) * (tw - tl)
    loss = (h - p.eta / 2.0).square().mean()
    return LossOut(loss, pair_metrics((lw - rw) / p.eta, (ll - rl) / p.eta))
