"""GSPO: PPO clipping on a length-normalised sequence-level importance ratio.

    s_i = (π_θ(y_i)/π_old(y_i))^(1/|y_i|) = exp((1/|y_i|) Σ_t (logp_{i,t} − logp_old_{i,t}))
    s_{i,t} = sg[s_i] · π_θ(y_{i,t}) / sg[π_θ(y_{i,t})]            (GSPO-token: value s_i, ∇ = s_i·∇logp_{i,t})
    ℓ_{i,t} = −min(s_{i,t}·A_{i,t}, clip(s_{i,t}, 1 − ε_low, 1 + ε_high)·A_{i,t})   (+ optional dual-clip)
    L = aggregate(w·ℓ, mask, loss_agg)

With A constant over a sequence (GRPO/RLOO advantages) GSPO-token equals GSPO in value and gradient, for
every ``loss_agg``; with token-level A it is the paper's GSPO-token. The default ``seq_mean_token_mean``
is the paper's (1/G) Σ_i.
Ref: Zheng et al. 2025, Group Sequence Policy Optimization, arXiv:2507.18071 §4 (GSPO objective with
s_i, and the GSPO-token variant; equation numbers to verify); clip ranges 3e-4 / 4e-4 from §5.1.
Deviations from the paper: the mean log-ratio is clamped at ±``log_ratio_clamp`` (numerical guard).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignrl.objectives.ppo import aggregate_policy_loss, check_clip, clipped_surrogate, masked_log_ratio, ratio_metrics
from alignrl.ops import masked_mean
from alignrl.ops.reductions import AggregationMode
from alignrl.registry import POLICY_LOSSES
from alignrl.types import LossOut


@dataclass(frozen=True, kw_only=True, slots=True)
class GSPOParams:
    clip_low: float = 3e-4
    """ε_low on the sequence ratio (the paper's 3e-4: sequence ratios stay much closer to 1 than token ratios)."""
    clip_high: float = 4e-4
    """ε_high on the sequence ratio (the paper's 4e-4)."""
    dual_clip: float | None = None
    """c > 1: for A < 0 the loss is at most −c·A; None disables."""
    loss_agg: AggregationMode = "seq_mean_token_mean"
    """How per-token losses reduce to the loss (ops.aggregate)."""
    log_ratio_clamp: float = 20.0
    """|mean log-ratio| of a sequence is clamped here before exp()."""

    def __post_init__(self) -> None:
        check_clip(self.clip_low, self.clip_high, self.dual_clip, self.loss_agg)


@POLICY_LOSSES.register("gspo", params=GSPOParams)
def gspo_loss(
    logp: torch.Tensor,
    logp_old: torch.Tensor,
    adv: torch.Tensor,
    mask: torch.Tensor,
    p: GSPOParams,
    *,
    weights: torch.Tensor | None = None,
    global_denominator: torch.Tensor | float | None = None,
) -> LossOut:
    """L = aggregate(−min(s_{i,t}A_{i,t}, clip(s_{i,t}, 1 − ε_low, 1 + ε_high)A_{i,t}), mask), s_{i,t} ≐ s_i.

    Args: logp (B, T) log π_θ(y_t), with grad; logp_old (B, T); adv (B, T) (usually constant per row);
        mask (B, T) bool; weights (B, T) optional constants; global_denominator for ``global_token_mean``.
    Returns: LossOut(loss, {approx_kl (token level), seq_ratio_mean/min/max, clipfrac, clipfrac_low,
        clipfrac_high, dual_clipfrac (token-weighted)}).
    Ref: arXiv:2507.18071 §4 (GSPO, GSPO-token).
    """
    m = mask.bool()
    adv = torch.where(m, adv, torch.zeros_like(adv))
    token_log_ratio = masked_log_ratio(logp, logp_old, m, p.log_ratio_clamp)
    log_s = masked_mean(token_log_ratio, m, dim=-1).clamp(-p.log_ratio_clamp, p.log_ratio_clamp)  # (B,)
    log_s_tok = log_s.detach().unsqueeze(-1) + logp - logp.detach()  # (B, T): value log s_i, ∂/∂logp_t = 1
    log_s_tok = torch.where(m, log_s_tok, torch.zeros_like(log_s_tok))
    sur = clipped_surrogate(log_s_tok.exp(), adv, p.clip_low, p.clip_high, p.dual_clip)
    loss = aggregate_policy_loss(sur.loss, m, p.loss_agg, weights, global_denominator)
    metrics = ratio_metrics(token_log_ratio, m, sur)
    rows = m.any(-1)
    seq = ratio_metrics(log_s.detach(), rows)
    metrics.update(seq_ratio_mean=seq["ratio_mean"], seq_ratio_min=seq["ratio_min"], seq_ratio_max=seq["ratio_max"])
    return LossOut(loss, metrics)
