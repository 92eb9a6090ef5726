"""PPO clipped surrogate with asymmetric clipping (DAPO clip-higher) and dual-clip.

    s_t = π_θ(y_t)/π_old(y_t) = exp(logp_t − logp_old_t)
    ℓ_t = −min(s_t·A_t, clip(s_t, 1 − ε_low, 1 + ε_high)·A_t)
    dual-clip, A_t < 0:  ℓ_t ← min(ℓ_t, −c·A_t)            (c > 1 bounds the loss of a huge ratio)
    L = aggregate(w_t·ℓ_t, mask, loss_agg)                  w_t: optional per-token weights (e.g. ``tis``)

GRPO's policy term is this loss with ``grpo`` advantages and ``loss_agg="seq_mean_token_mean"``; DAPO is
ε_high > ε_low with ``token_mean``; Dr. GRPO is ``seq_mean_token_sum`` (or ``global_token_mean`` with
denominator B·T_max, as TRL's ``dr_grpo``). A KL-to-reference loss term (GRPO's β·k3) is a separate
term from ``alignrl.divergences``, added by the driver.
Refs: Schulman et al. 2017, PPO, arXiv:1707.06347 eq. 7 (L^CLIP); Yu et al. 2025, DAPO,
arXiv:2503.14476 §3.1 Clip-Higher (ε_low/ε_high; eq. number to verify); Ye et al. 2020, Mastering Complex
Control in MOBA Games with Deep RL, arXiv:1912.09729 §3 dual-clip PPO (eq. number to verify).
Deviations from the papers: the log-ratio is clamped at ±``log_ratio_clamp`` before exp() (a numerical
guard; no gradient beyond it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from alignrl.ops import AGGREGATION_MODES, aggregate
from alignrl.ops.reductions import AggregationMode
from alignrl.registry import POLICY_LOSSES
from alignrl.types import LossOut


@dataclass(frozen=True, kw_only=True, slots=True)
class PPOParams:
    clip_low: float = 0.2
    """ε_low: the ratio is clipped below at 1 − ε_low (matters for A < 0)."""
    clip_high: float = 0.2
    """ε_high: the ratio is clipped above at 1 + ε_high (matters for A > 0); DAPO uses 0.28."""
    dual_clip: float | None = None
    """c > 1: for A < 0 the loss is at most −c·A (Ye et al. 2020; 3.0 is common); None disables."""
    loss_agg: AggregationMode = "token_mean"
    """How per-token losses reduce to the loss (ops.aggregate); global_token_mean needs global_denominator."""
    log_ratio_clamp: float = 20.0
    """|logp − logp_old| is clamped here before exp(): keeps the ratio finite in fp32."""

    def __post_init__(self) -> None:
        check_clip(self.clip_low, self.clip_high, self.dual_clip, self.loss_agg)


def check_clip(clip_low: float, clip_high: float, dual_clip: float | None, loss_agg: str) -> None:
    """Shared validation of the clipped-surrogate knobs (PPO, GSPO)."""
    if not 0.0 <= clip_low < 1.0:
        raise ValueError(f"clip_low must be in [0, 1), got {clip_low}")
    if clip_high < 0.0:
        raise ValueError(f"clip_high must be >= 0, got {clip_high}")
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be > 1 (or null), got {dual_clip}")
    if loss_agg not in AGGREGATION_MODES:
        raise ValueError(f"loss_agg must be one of {', '.join(AGGREGATION_MODES)}, got {loss_agg!r}")


class Surrogate(NamedTuple):
    loss: torch.Tensor          # (B, T) per-token ℓ_t
    clipped_low: torch.Tensor   # (B, T) bool, A < 0 and s < 1 − ε_low: clipped, zero gradient
    clipped_high: torch.Tensor  # (B, T) bool, A > 0 and s > 1 + ε_high: clipped, zero gradient
    dual_clipped: torch.Tensor | None  # (B, T) bool, A < 0 and s > c: bounded by −c·A, zero gradient; None: no dual clip


def clipped_surrogate(
    ratio: torch.Tensor, adv: torch.Tensor, clip_low: float, clip_high: float, dual_clip: float | None
) -> Surrogate:
    """ℓ = max(−A·s, −A·clip(s, 1 − ε_low, 1 + ε_high)), then min(ℓ, −c·A) where A < 0. (B, T) -> Surrogate."""
    neg_adv = -adv
    loss = torch.maximum(neg_adv * ratio, neg_adv * ratio.clamp(1.0 - clip_low, 1.0 + clip_high))
    dual = None
    if dual_clip is not None:
        loss = torch.where(adv < 0, torch.minimum(loss, -dual_clip * adv), loss)
        dual = (adv < 0) & (ratio > dual_clip)
    return Surrogate(loss, (adv < 0) & (ratio < 1.0 - clip_low), (adv > 0) & (ratio > 1.0 + clip_high), dual)


def masked_extremes(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(min, max) of x over True positions; (1, 1) if there are none (a ratio's neutral value)."""
    m = mask.bool()
    off = ~m.expand(x.shape)
    lo, hi = x.masked_fill(off, float("inf")).amin(), x.masked_fill(off, float("-inf")).amax()
    any_ = m.any()
    return torch.where(any_, lo, torch.ones_like(lo)), torch.where(any_, hi, torch.ones_like(hi))


@torch.no_grad()
def ratio_metrics(log_ratio: torch.Tensor, mask: torch.Tensor, sur: Surrogate | None = None,
                  ratio: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """approx_kl = mean (s − 1) − log s (k3 estimate of KL(π_old‖π_θ)), ratio mean/min/max and clip fractions."""
    ratio = log_ratio.exp() if ratio is None else ratio.detach()
    lo, hi = masked_extremes(ratio, mask)
    f = ratio.dtype
    m = mask.to(f).flatten()
    denom = m.sum().clamp_min(1.0)

    def mean(x: torch.Tensor) -> torch.Tensor:  # masked mean as one dot product (cheaper than masked_mean here)
        return torch.dot(x.to(f).expand(mask.shape).flatten(), m) / denom

    out = {"approx_kl": mean(ratio - 1.0 - log_ratio), "ratio_mean": mean(ratio), "ratio_min": lo, "ratio_max": hi}
    if sur is not None:
        out["clipfrac"] = mean(sur.clipped_low | sur.clipped_high)
        out["clipfrac_low"] = mean(sur.clipped_low)
        out["clipfrac_high"] = mean(sur.clipped_high)
        out["dual_clipfrac"] = mean(sur.dual_clipped) if sur.dual_clipped is not None else torch.zeros((), dtype=f)
    return out


def aggregate_policy_loss(
    per_token: torch.Tensor,
    mask: torch.Tensor,
    loss_agg: str,
    weights: torch.Tensor | None,
    global_denominator: torch.Tensor | float | None,
    *,
    zero_off_mask: bool = False,
) -> torch.Tensor:
    """aggregate(w·ℓ, mask): optional per-token weights, masked tokens set to exactly 0 first.

    ``zero_off_mask``: the caller guarantees ℓ is exactly 0 off the mask (saves a pass when there are no weights).
    """
    if weights is not None:
        per_token = per_token * weights
    if weights is not None or not zero_off_mask:
        per_token = torch.where(mask.bool(), per_token, torch.zeros_like(per_token))
    return aggregate(per_token, mask, loss_agg, global_denominator)


def masked_log_ratio(logp: torch.Tensor, logp_old: torch.Tensor, mask: torch.Tensor, clamp: float) -> torch.Tensor:
    """logp − logp_old on response tokens (clamped to ±clamp), 0 elsewhere. (B, T)"""
    lr = torch.where(mask.bool(), logp - logp_old, torch.zeros_like(logp))
    return lr.clamp(-clamp, clamp)


@POLICY_LOSSES.register("ppo", params=PPOParams)
def ppo_loss(
    logp: torch.Tensor,
    logp_old: torch.Tensor,
    adv: torch.Tensor,
    mask: torch.Tensor,
    p: PPOParams,
    *,
    weights: torch.Tensor | None = None,
    global_denominator: torch.Tensor | float | None = None,
) -> LossOut:
    """L = aggregate(w_t·max(−A_t·s_t, −A_t·clip(s_t, 1 − ε_low, 1 + ε_high)) [∧ −c·A_t if A_t < 0], mask).

    Args: logp (B, T) log π_θ(y_t), with grad; logp_old (B, T) log π_old(y_t) at rollout; adv (B, T);
        mask (B, T) bool, True on response tokens; weights (B, T) optional constants (e.g. ``tis_weights``);
        global_denominator: token count over all DP ranks and micro-batches for ``global_token_mean``.
    Returns: LossOut(loss, {approx_kl, ratio_mean, ratio_min, ratio_max, clipfrac, clipfrac_low,
        clipfrac_high, dual_clipfrac}).
    Ref: arXiv:1707.06347 eq. 7; clip-higher arXiv:2503.14476 §3.1; dual-clip arXiv:1912.09729 §3.
    """
    adv = torch.where(mask.bool(), adv, torch.zeros_like(adv))
    log_ratio = masked_log_ratio(logp, logp_old, mask, p.log_ratio_clamp)
    ratio = log_ratio.exp()
    sur = clipped_surrogate(ratio, adv, p.clip_low, p.clip_high, p.dual_clip)
    # adv and log_ratio are 0 off the mask, so the surrogate is exactly 0 there (also under dual-clip)
    loss = aggregate_policy_loss(sur.loss, mask, p.loss_agg, weights, global_denominator, zero_off_mask=True)
    return LossOut(loss, ratio_metrics(log_ratio, mask, sur, ratio))
