"""Clipped value loss for the PPO critic (a helper: called directly, not registered).

    V_clip = V_old + clip(V − V_old, −ε_v, ε_v)
    ℓ_t   = ½·max((V_t − R_t)², (V_clip,t − R_t)²)          (ε_v = None: ½·(V_t − R_t)²)
    L     = aggregate(ℓ, mask, loss_agg)

R_t are the GAE returns (``alignrl.advantages.gae``), V_old the values at rollout time.
Refs: PPO arXiv:1707.06347 eq. 9 (L^VF, squared error); value clipping as in the PPO2 baselines code,
studied by Engstrom et al. 2020, Implementation Matters in Deep Policy Gradients, arXiv:2005.12729
(code-level optimisation "value function clipping").
Deviations from the paper: clipping is not in the PPO paper (it is in its reference implementation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignrl.objectives.ppo import aggregate_policy_loss
from alignrl.ops import AGGREGATION_MODES, masked_mean
from alignrl.ops.reductions import AggregationMode
from alignrl.types import LossOut


@dataclass(frozen=True, kw_only=True, slots=True)
class ValueParams:
    clip: float | None = 0.2
    """ε_v: the new value may move at most this far from V_old before the clipped error takes over; None: plain MSE."""
    loss_agg: AggregationMode = "token_mean"
    """How per-token losses reduce to the loss (ops.aggregate)."""

    def __post_init__(self) -> None:
        if self.clip is not None and self.clip <= 0:
            raise ValueError(f"clip must be > 0 (or null), got {self.clip}")
        if self.loss_agg not in AGGREGATION_MODES:
            raise ValueError(f"loss_agg must be one of {', '.join(AGGREGATION_MODES)}, got {self.loss_agg!r}")


def value_loss(
    values: torch.Tensor,
    values_old: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    p: ValueParams,
    *,
    global_denominator: torch.Tensor | float | None = None,
) -> LossOut:
    """L = aggregate(½·max((V − R)², (V_old + clip(V − V_old, ±ε_v) − R)²), mask).

    Args: values (B, T) V_φ(s_t), with grad; values_old (B, T) at rollout; returns (B, T) targets R_t;
        mask (B, T) bool; global_denominator for ``global_token_mean``.
    Returns: LossOut(loss, {vf_clipfrac: fraction of tokens where the clipped error is the larger,
        value_mean, value_mse: mean (V − R)²}).
    Ref: arXiv:1707.06347 eq. 9; arXiv:2005.12729 (value clipping).
    """
    m = mask.bool()
    zero = torch.zeros_like(values)
    err = torch.where(m, values - returns, zero) ** 2  # masked tokens: exactly 0, also in the gradient
    per_token = err
    if p.clip is not None:
        v_clip = values_old + (values - values_old).clamp(-p.clip, p.clip)
        err_clip = torch.where(m, v_clip - returns, zero) ** 2
        per_token = torch.maximum(err, err_clip)
    loss = aggregate_policy_loss(0.5 * per_token, m, p.loss_agg, None, global_denominator)
    with torch.no_grad():
        clipped = (err_clip > err) if p.clip is not None else torch.zeros_like(m)
        metrics = {
            "vf_clipfrac": masked_mean(clipped.to(values.dtype), m),
            "value_mean": masked_mean(values.detach(), m),
            "value_mse": masked_mean(err.detach(), m),
        }
    return LossOut(loss, metrics)
