"""D²O: distributional dispreference optimisation, alignment from human negatives only.

For each prompt a human-labelled negative y_l and K self-generated samples y_1..y_K (drawn from the
initial/reference policy) stand in for the missing positive; the loss pushes the policy's average
log-ratio on its own samples above the log-ratio of the negative:

    z = (β/K)·Σ_i ρ(y_i) − α·ρ(y_l),   ρ(y) = log π_θ(y) − log π_ref(y)
    ℓ = −log σ(z),   L = (1/B)·Σ_prompts ℓ

The paper shows this maximises a distribution-level preference over the negatives and carries an
implicit Jeffrey-divergence regulariser. With K = 1 and α = β it is DPO with y_1 as the positive.
Ref: Duan et al. 2024, "Negating Negatives: Alignment with Human Negative Samples via Distributional
Dispreference Optimization", arXiv:2403.03419 §3 (the D²O loss; verify eq. no.).
Deviations from the paper: the paper uses separate reference snapshots for the sample term and the
negative term; here they are separate inputs (logp_ref_samples, logp_ref_rejected), so a driver can
pass either. Defaults β = α = 0.1 are placeholders, not the paper's values (verify).
"""

from __future__ import annotations

from dataclasses import dataclass

from alignrl.objectives.preference_base import PreferenceInputs, check_beta, pair_metrics, require, sigmoid_loss
from alignrl.registry import PREFERENCE_LOSSES
from alignrl.types import LossOut


@dataclass(frozen=True, kw_only=True, slots=True)
class D2OParams:
    beta: float = 0.1
    """β > 0, weight of the mean log-ratio of the K self-generated samples (placeholder; verify)."""
    alpha: float = 0.1
    """α > 0, weight of the negative's log-ratio (placeholder; verify)."""

    def __post_init__(self) -> None:
        check_beta("d2o", self.beta)
        if not self.alpha > 0:
            raise ValueError(f"d2o: alpha must be > 0, got {self.alpha}")


@PREFERENCE_LOSSES.register("d2o", params=D2OParams)
def d2o_loss(x: PreferenceInputs, p: D2OParams) -> LossOut:
    """L = −(1/B)·Σ log σ((β/K)·Σ_i ρ(y_i) − α·ρ(y_l)).

    Gradient: ∂L/∂log π_θ(y_i) = −(β/(B·K))·σ(−z); ∂L/∂log π_θ(y_l) = +(α/B)·σ(−z).
    Args: x.logp_samples (B, K) with grad, x.logp_ref_samples (B, K): K self-generated samples per prompt;
        x.logp_rejected (B,) with grad, x.logp_ref_rejected (B,): the human negative. Chosen fields unused.
    Returns: LossOut(loss (), {reward_chosen = β·mean_i ρ(y_i), reward_rejected = β·ρ(y_l),
        reward_margin, reward_accuracy}).
    Ref: arXiv:2403.03419 §3.
    """
    ls, rs, ll, rl = require(x, "d2o", "logp_samples", "logp_ref_samples", "logp_rejected", "logp_ref_rejected")
    rho_s, rho_l = (ls - rs).mean(-1), ll - rl  # (B,), (B,)
    loss = sigmoid_loss(p.beta * rho_s - p.alpha * rho_l).mean()
    return LossOut(loss, pair_metrics(p.beta * rho_s, p.beta * rho_l))
