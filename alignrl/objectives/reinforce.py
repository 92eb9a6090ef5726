"""Vanilla policy gradient (REINFORCE): ℓ_t = −A_t·log π_θ(y_t).

    ∇L = −E[Σ_t A_t·∇log π_θ(y_t)]     with A from any ``ADVANTAGES`` estimator (baseline, RLOO, GRPO, …)
    L  = aggregate(w_t·(−A_t·logp_t), mask, loss_agg)

The loss value is not meaningful, only its gradient. It assumes on-policy samples: ``logp_old`` is only
used for the ``approx_kl`` metric (use ``ppo`` for off-policy mini-batches).
Refs: Williams 1992, Simple statistical gradient-following algorithms (REINFORCE); Sutton et al. 2000,
Policy Gradient Methods, Theorem 1; RLOO uses it with a leave-one-out baseline, arXiv:2402.14740 §3.
Deviations from the papers: none.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignrl.objectives.ppo import aggregate_policy_loss, masked_log_ratio, ratio_metrics
from alignrl.ops import AGGREGATION_MODES
from alignrl.ops.reductions import AggregationMode
from alignrl.registry import POLICY_LOSSES
from alignrl.types import LossOut


@dataclass(frozen=True, kw_only=True, slots=True)
class ReinforceParams:
    loss_agg: AggregationMode = "token_mean"
    """How per-token losses reduce to the loss (ops.aggregate)."""
    log_ratio_clamp: float = 20.0
    """Clamp of logp − logp_old in the approx_kl metric."""

    def __post_init__(self) -> None:
        if self.loss_agg not in AGGREGATION_MODES:
            raise ValueError(f"loss_agg must be one of {', '.join(AGGREGATION_MODES)}, got {self.loss_agg!r}")


@POLICY_LOSSES.register("reinforce", params=ReinforceParams)
def reinforce_loss(
    logp: torch.Tensor,
    logp_old: torch.Tensor,
    adv: torch.Tensor,
    mask: torch.Tensor,
    p: ReinforceParams,
    *,
    weights: torch.Tensor | None = None,
    global_denominator: torch.Tensor | float | None = None,
) -> LossOut:
    """L = aggregate(−A_t·logp_t, mask)  (score-function estimator, ∇ = −A_t·∇logp_t per token).

    Args: logp (B, T) log π_θ(y_t), with grad; logp_old (B, T) (metrics only); adv (B, T); mask (B, T) bool;
        weights (B, T) optional constants; global_denominator for ``global_token_mean``.
    Returns: LossOut(loss, {approx_kl, ratio_mean, ratio_min, ratio_max}).
    Ref: Williams 1992 (REINFORCE); Sutton et al. 2000 Theorem 1.
    """
    m = mask.bool()
    adv = torch.where(m, adv, torch.zeros_like(adv))
    per_token = -adv * torch.where(m, logp, torch.zeros_like(logp))
    loss = aggregate_policy_loss(per_token, m, p.loss_agg, weights, global_denominator)
    return LossOut(loss, ratio_metrics(masked_log_ratio(logp, logp_old, m, p.log_ratio_clamp), m))
