"""DPKD: direct preference knowledge distillation, i.e. DPO with the teacher as the reference.

The student q_θ should prefer the teacher's output y_T over its own output y_S, with the implicit
reward measured against the teacher p_T:

    z = β·([log q_θ(y_T) − log p_T(y_T)] − [log q_θ(y_S) − log p_T(y_S)])
    ℓ = −log σ(z),   L = (1/B)·Σ_pairs ℓ

Ref: Li et al. 2024, "Direct Preference Knowledge Distillation for Large Language Models",
arXiv:2406.19774 §3 (stage 2, the preference objective; verify eq. no.).
Deviations from the paper: only the preference stage is here; the paper's first stage (implicit reward
plus reverse KL to the teacher on student samples) is a distillation objective, not a pairwise loss.
"""

from __future__ import annotations

from dataclasses import dataclass

from alignrl.objectives.preference_base import PreferenceInputs, check_beta, pair_metrics, require, sigmoid_loss
from alignrl.registry import PREFERENCE_LOSSES
from alignrl.types import LossOut


@dataclass(frozen=True, kw_only=True, slots=True)
class DPKDParams:
    beta: float = 0.1
    """β > 0, strength of the implicit KL(q_θ‖p_T) constraint."""

    def __post_init__(self) -> None:
        check_beta("dpkd", self.beta)


@PREFERENCE_LOSSES.register("dpkd", params=DPKDParams)
def dpkd_loss(x: PreferenceInputs, p: DPKDParams) -> LossOut:
    """L = −(1/B)·Σ log σ(β·([log q_θ(y_T) − log p_T(y_T)] − [log q_θ(y_S) − log p_T(y_S)])).

    Gradient: ∂L/∂log q_θ(y_T) = −∂L/∂log q_θ(y_S) = −(β/B)·σ(−z) per pair (DPO's, with p_T for π_ref).
    Args: x.logp_chosen (B,) log q_θ(y_T) on the teacher's output, x.logp_rejected (B,) log q_θ(y_S) on the
        student's output, with grad; x.logp_teacher_chosen, x.logp_teacher_rejected (B,) log p_T of both.
    Returns: LossOut(loss (), {reward_chosen, reward_rejected = β·(log q_θ − log p_T), reward_margin,
        reward_accuracy}).
    Ref: arXiv:2406.19774 §3.
    """
    lw, ll, tw, tl = require(x, "dpkd", "logp_chosen", "logp_rejected", "logp_teacher_chosen", "logp_teacher_rejected")
    rho_w, rho_l = lw - tw, ll - tl
    loss = sigmoid_loss(p.beta * (rho_w - rho_l)).mean()
    return LossOut(loss, pair_metrics(p.beta * rho_w, p.beta * rho_l))
