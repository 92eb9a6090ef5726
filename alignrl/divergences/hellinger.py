"""Squared Hellinger distance.

H²(p, q) = ½·Σ_v (√p(v) − √q(v))² = 1 − Σ_v √(p·q),   f(u) = ½·(√u − 1)²,   f′(u) = ½·(1 − 1/√u)
Symmetric, 0 ≤ H² ≤ 1; H² = D_{α=½}/4 (alpha.py).
Refs: Hellinger 1909; Le Cam & Yang 2000 (the ½ normalization); Csiszár 1967.
Deviations from the papers: conventions differ by the leading ½ (some authors use Σ(√p − √q)² ∈ [0, 2]);
this one is bounded by 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignrl.divergences.base import DivergenceParams, clamp_log_ratio, register_divergence


@dataclass(frozen=True, kw_only=True, slots=True)
class HellingerParams(DivergenceParams):
    """Hellinger has no knobs beyond the shared ones."""


def hellinger_sampled(log_u: torch.Tensor, p: HellingerParams) -> tuple[torch.Tensor, torch.Tensor]:
    """f(u) = ½·(√u − 1)²,  f′(u) = ½·(1 − 1/√u).

    Args: log_u (B, T) = logp − logp_ref. Returns: f, f′ (B, T), fp32 or wider.
    E_{y∼π_ref}[f(u)] = H²(π, π_ref); on y ∼ π average f(u)/u.
    """
    half = 0.5 * clamp_log_ratio(log_u, p)
    return 0.5 * torch.expm1(half).square(), -0.5 * torch.expm1(-half)


@register_divergence("hellinger", HellingerParams, sampled=hellinger_sampled)
def hellinger(logp: torch.Tensor, logq: torch.Tensor, p: HellingerParams) -> torch.Tensor:
    """H²(p, q) = ½·Σ_v (√p(v) − √q(v))²   (Hellinger 1909; ½-normalized, in [0, 1]).

    Args: logp, logq (..., V) normalized log-probs of the policy p and the anchor q.
    Returns: (...) in [0, 1].
    """
    return 0.5 * (torch.exp(0.5 * logp) - torch.exp(0.5 * logq)).square().sum(-1)
