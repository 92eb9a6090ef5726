"""f-DPO: DPO under a general f-divergence constraint D_f(π_θ‖π_ref) in place of the reverse KL.

    u(y) = π_θ(y)/π_ref(y) = exp(ρ(y)),   ℓ = −log σ(β·[f′(u(y_w)) − f′(u(y_l))]),   L = (1/B)·Σ_pairs ℓ
    f′ from the divergences registry (``DIVERGENCES.get(name).sampled(log u, p) -> (f, f′)``):
      reverse_kl  f′(u) = log u + 1            → DPO exactly (the constant cancels)
      forward_kl  f′(u) = −1/u                 (TRL: 1 − 1/u, same difference)
      js          f′(u) = ½·log(2u/(1+u))      (½ of f-DPO Table 1's JS generator, see deviations)
      alpha       f′(u) = (u^{α−1} − 1)/(α−1)  (TRL's f_alpha_divergence_coef = our α = 1 − f-DPO's α)
    any other registered divergence with a sampled form works as well.

The KKT argument of the paper removes the partition function only because f′ is applied to the ratio
at the optimum; the loss is valid for any f whose f′ is invertible on (0, ∞).
Ref: Wang et al. 2023, "Beyond Reverse KL: Generalizing Direct Preference Optimization with Diverse
Divergence Constraints", arXiv:2309.16240 Table 1 (f′ per divergence) and §4 (the f-DPO loss; verify eq. no.).
Deviations from the paper: (1) JS uses the registry's JS(π, π_ref) = ½·(f-DPO's generator), so our β
equals 2× the paper's (and TRL's ``js_divergence``) β for the same loss. (2) The α-divergence follows
the Amari/Cichocki convention of divergences/alpha.py: our α = 1 − the paper's α (identical at ½; TRL
uses our convention). (3) log u is clamped to ±``log_ratio_clamp`` before f′ (exp() overflow guard in
forward KL / α); with ``math.inf`` reverse_kl equals DPO at any margin.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

import alignrl.divergences  # noqa: F401  (registers the divergences this loss looks up)
from alignrl.objectives.preference_base import PreferenceInputs, check_beta, log_ratios, pair_metrics, sigmoid_loss
from alignrl.registry import DIVERGENCES, PREFERENCE_LOSSES
from alignrl.types import LossOut


@dataclass(frozen=True, kw_only=True, slots=True)
class FDPOParams:
    beta: float = 0.1
    """β > 0, strength of the β·D_f(π_θ‖π_ref) constraint."""
    divergence: str = "reverse_kl"
    """A ``DIVERGENCES`` name with a sampled form: reverse_kl, forward_kl, js, alpha (also chi2, hellinger, …)."""
    alpha: float | None = None
    """α for divergences that have one (the α-divergence; None keeps the divergence's default, ½)."""
    log_ratio_clamp: float = 20.0
    """|log u| = |ρ(y)| is clamped here before f′ (exp(20) ≈ 4.9e8); math.inf disables the clamp."""

    def __post_init__(self) -> None:
        check_beta("f_dpo", self.beta)
        if self.divergence not in DIVERGENCES:
            raise ValueError(f"f_dpo: {DIVERGENCES.unknown_message(self.divergence)}")
        if not DIVERGENCES.get(self.divergence).has_sampled:
            raise ValueError(f"f_dpo: divergence {self.divergence!r} has no sampled form (f, f′)")
        if self.alpha is not None and "alpha" not in _param_names(self.divergence):
            raise ValueError(f"f_dpo: divergence {self.divergence!r} takes no alpha")
        if not self.log_ratio_clamp > 0:
            raise ValueError(f"f_dpo: log_ratio_clamp must be > 0, got {self.log_ratio_clamp}")


def _param_names(divergence: str) -> set[str]:
    return {f.name for f in fields(DIVERGENCES.entry(divergence).params)}


def f_prime(log_u: torch.Tensor, p: FDPOParams) -> torch.Tensor:
    """f′(u) of ``p.divergence`` elementwise from log u, fp32 or wider (any shape)."""
    kwargs: dict = {"log_ratio_clamp": p.log_ratio_clamp}
    if p.alpha is not None:
        kwargs["alpha"] = p.alpha
    params = DIVERGENCES.entry(p.divergence).params(**kwargs)
    return DIVERGENCES.get(p.divergence).sampled(log_u, params)[1]


@PREFERENCE_LOSSES.register("f_dpo", params=FDPOParams)
def f_dpo_loss(x: PreferenceInputs, p: FDPOParams) -> LossOut:
    """L = −(1/B)·Σ log σ(β·[f′(u_w) − f′(u_l)]),  u = π_θ(y)/π_ref(y) = exp(ρ(y)).

    Gradient: ∂L/∂ρ(y_w) = −(β/B)·σ(−z)·u_w·f″(u_w) with z the logit (reverse KL: u·f″(u) = 1, DPO's).
    Args: x.logp_chosen, x.logp_rejected (B,) with grad; x.logp_ref_chosen, x.logp_ref_rejected (B,).
    Returns: LossOut(loss (), {reward_chosen, reward_rejected = β·ρ, reward_margin, reward_accuracy,
        score_margin = mean f′(u_w) − f′(u_l)}).
    Ref: arXiv:2309.16240 Table 1 and §4.
    """
    rho_w, rho_l = log_ratios(x, "f_dpo")
    score_margin = f_prime(rho_w, p) - f_prime(rho_l, p)
    loss = sigmoid_loss(p.beta * score_margin).mean()
    return LossOut(loss, pair_metrics(p.beta * rho_w, p.beta * rho_l, score_margin=score_margin))
