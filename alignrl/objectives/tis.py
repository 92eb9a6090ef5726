"""Truncated importance sampling (TIS) for the rollout-engine / learner mismatch (helper, not registered).

The rollout engine (vLLM) samples y from π_rollout, whose log-probs differ from the learner's
recomputation π_old of the same weights (kernels, precision, MoE routing). The policy loss is an
expectation under π_old, so each token's loss is reweighted by a truncated importance ratio:

    w_t = min(π_old(y_t)/π_rollout(y_t), C)                       level="token"
    w_i = min(Π_t π_old(y_{i,t})/π_rollout(y_{i,t}), C)           level="sequence" (same w on every token)
    L   = aggregate(w_t·ℓ_t, mask)         pass ``weights=w`` to any ``POLICY_LOSSES`` entry

The weights are constants (no gradient). Truncation bounds the variance at the cost of a small bias.
Refs: Yao et al. 2025, "Your Efficient RL Framework Secretly Brings You Off-Policy RL Training"
(blog, fengyao.notion.site/off-policy-rl; no arXiv id); truncated importance weights ρ̄ as in IMPALA
V-trace, Espeholt et al. 2018, arXiv:1802.01561 eq. 1; Ionides 2008, Truncated Importance Sampling.
Deviations from the papers: the log-ratio is clamped at ±``log_ratio_clamp`` before exp() (guard).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from alignrl.objectives.ppo import masked_extremes, masked_log_ratio
from alignrl.ops import masked_mean, masked_sum


@dataclass(frozen=True, kw_only=True, slots=True)
class TISParams:
    cap: float = 2.0
    """C: importance weights are truncated from above at C (Yao et al. use 2)."""
    level: Literal["token", "sequence"] = "token"
    """Per-token ratios, or one ratio per sequence (product over its tokens)."""
    log_ratio_clamp: float = 20.0
    """|logp_old − logp_rollout| (summed, for sequences) is clamped here before exp()."""

    def __post_init__(self) -> None:
        if self.cap <= 0:
            raise ValueError(f"cap must be > 0, got {self.cap}")


@torch.no_grad()
def tis_weights(
    logp_old: torch.Tensor, logp_rollout: torch.Tensor, mask: torch.Tensor, p: TISParams
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """w = min(exp(logp_old − logp_rollout), C) per token (or per sequence, broadcast); 1 on masked tokens.

    Args: logp_old (B, T) learner log-probs of the sampled tokens at rollout time; logp_rollout (B, T)
        the rollout engine's log-probs of the same tokens; mask (B, T) bool.
    Returns: (weights (B, T), {tis_weight_mean, tis_truncated_frac, tis_ratio_max (before truncation),
        tis_logp_diff_mean: mean |logp_old − logp_rollout|}).
    Ref: Yao et al. 2025 (blog); arXiv:1802.01561 eq. 1 (truncated ρ̄).
    """
    m = mask.bool()
    log_ratio = masked_log_ratio(logp_old, logp_rollout, m, float("inf"))  # (B, T), 0 on masked tokens
    abs_diff = log_ratio.abs()
    if p.level == "sequence":
        log_ratio = masked_sum(log_ratio, m, dim=-1).unsqueeze(-1).expand_as(log_ratio)
    ratio = log_ratio.clamp(-p.log_ratio_clamp, p.log_ratio_clamp).exp()
    w = torch.where(m, ratio.clamp(max=p.cap), torch.ones_like(ratio))
    metrics = {
        "tis_weight_mean": masked_mean(w, m),
        "tis_truncated_frac": masked_mean((ratio > p.cap).to(ratio.dtype), m),
        "tis_ratio_max": masked_extremes(ratio, m)[1],
        "tis_logp_diff_mean": masked_mean(abs_diff, m),
    }
    return w, metrics
