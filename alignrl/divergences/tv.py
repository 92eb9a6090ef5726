"""Total variation distance.

TV(p, q) = ½·Σ_v |p(v) − q(v)|,   f(u) = ½·|u − 1|,   f′(u) = ½·sign(u − 1)
Symmetric, 0 ≤ TV ≤ 1; in speculative decoding 1 − TV(p, q) is the token acceptance rate of a draft p
against a target q (DistillSpec).
Refs: f-DPG, Go et al. 2023, arXiv:2302.08215 (TV generator); GKD arXiv:2306.13649 (TVD as a KD loss);
DistillSpec, Zhou et al. 2024, arXiv:2310.08461 (TVD ↔ acceptance rate).
Deviations from the papers: at u = 1 (p = q) the subgradient 0 is used, as torch.abs does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignrl.divergences.base import DivergenceParams, clamp_log_ratio, register_divergence


@dataclass(frozen=True, kw_only=True, slots=True)
class TVParams(DivergenceParams):
    """TV has no knobs beyond the shared ones."""


def tv_sampled(log_u: torch.Tensor, p: TVParams) -> tuple[torch.Tensor, torch.Tensor]:
    """f(u) = ½·|u − 1|,  f′(u) = ½·sign(u − 1)   (f-DPG arXiv:2302.08215).

    Args: log_u (B, T) = logp − logp_ref. Returns: f, f′ (B, T), fp32 or wider.
    E_{y∼π_ref}[f(u)] = TV(π, π_ref); on y ∼ π average f(u)/u.
    """
    log_u = clamp_log_ratio(log_u, p)
    return 0.5 * torch.expm1(log_u).abs(), 0.5 * torch.sign(log_u)


@register_divergence("tv", TVParams, sampled=tv_sampled)
def tv(logp: torch.Tensor, logq: torch.Tensor, p: TVParams) -> torch.Tensor:
    """TV(p, q) = ½·Σ_v |p(v) − q(v)|   (GKD arXiv:2306.13649 §3; DistillSpec arXiv:2310.08461).

    Args: logp, logq (..., V) normalized log-probs of the policy p and the anchor q.
    Returns: (...) in [0, 1].
    """
    return 0.5 * (logp.exp() - logq.exp()).abs().sum(-1)
