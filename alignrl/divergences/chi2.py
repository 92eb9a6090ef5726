"""Pearson χ² divergence.

χ²(p‖q) = Σ_v (p(v) − q(v))²/q(v) = Σ_v q·(u − 1)²,   f(u) = (u − 1)²,   f′(u) = 2·(u − 1)
Unbounded where q ≪ p; the regularizer ORPO argues for (on occupancy measures: √χ²(μ_π‖μ_base)).
Refs: Pearson 1900; Laidlaw et al. 2024, "Correlated Proxies" (ORPO), arXiv:2403.03185.
Deviations from the papers: log u is clamped above at log_ratio_clamp in both forms (p²/q leaves the
float32 range when q is tiny); with the default 20 the clamp only acts where p/q > 4.9e8, and an entry
with q = 0 < p then adds q·(e²⁰ − 1)² = 0 where the unguarded χ² is +inf. Set log_ratio_clamp = math.inf
for the unguarded value (+inf there). Entries with p = q = 0 add 0 either way. Occupancy measures and the
discriminator of ORPO are not here: this is the per-token divergence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from alignrl.divergences.base import DivergenceParams, clamp_log_ratio, register_divergence, weighted_expm1_


@dataclass(frozen=True, kw_only=True, slots=True)
class Chi2Params(DivergenceParams):
    """χ² has no knobs beyond the shared ones (log_ratio_clamp guards it)."""


def chi2_sampled(log_u: torch.Tensor, p: Chi2Params) -> tuple[torch.Tensor, torch.Tensor]:
    """f(u) = (u − 1)²,  f′(u) = 2·(u − 1).

    Args: log_u (B, T) = logp − logp_ref. Returns: f, f′ (B, T), fp32 or wider.
    E_{y∼π_ref}[f(u)] = χ²(π‖π_ref); on y ∼ π average f(u)/u = u − 2 + 1/u.
    """
    u_minus_1 = torch.expm1(clamp_log_ratio(log_u, p))
    return u_minus_1.square(), 2.0 * u_minus_1


@register_divergence("chi2", Chi2Params, sampled=chi2_sampled)
def chi2(logp: torch.Tensor, logq: torch.Tensor, p: Chi2Params) -> torch.Tensor:
    """χ²(p‖q) = Σ_v (p(v) − q(v))² / q(v)   (Pearson; ORPO arXiv:2403.03185).

    Args: logp, logq (..., V) normalized log-probs of the policy p and the anchor q.
    Returns: (...) ≥ 0, computed as Σ (√q·(u − 1))² with log u ≤ log_ratio_clamp. Entries with q = 0 add
    0 under a finite clamp (q·(e^{clamp} − 1)² → 0: the clamped χ² is continuous there); with
    log_ratio_clamp = inf an entry with q = 0 < p makes it +inf, as by definition (p = q = 0 adds 0).
    """
    ell = (logp - logq).clamp_max(p.log_ratio_clamp)
    out = weighted_expm1_(0.5 * logq, ell).square().sum(-1)  # √q·(u − 1), squared; 0 where q = 0 (ell reused)
    if math.isinf(p.log_ratio_clamp):
        return torch.where((torch.isneginf(logq) & ~torch.isneginf(logp)).any(-1), math.inf, out)
    return out
