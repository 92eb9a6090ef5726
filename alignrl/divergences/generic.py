"""A generic f-divergence from a user-supplied generator f and its derivative f′.

D_f(p‖q) = Σ_v q(v)·f(p(v)/q(v)) = E_{v∼q}[f(u)],   f convex, f(1) = 0
f-DPG trains on the pseudo-reward −f′(π/p*); f-DPO's implicit reward is β·f′(π/π_ref); DPH-RL averages
f(π/π_0) over offline π_0 samples. Any (f, f′) pair plugs in here without a new file; the Params hold
callables, so this entry is for code, not recipes (a recipe names one of the registered families).
Refs: Csiszár 1967; Ali & Silvey 1966; f-DPG, Go et al. 2023, arXiv:2302.08215; f-DPO arXiv:2309.16240.
Deviations from the papers: u = exp(log u) with |log u| ≤ log_ratio_clamp in both forms (f is arbitrary,
so the full form cannot be rewritten stably the way the named families are).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from alignrl.divergences.base import DivergenceParams, clamp_log_ratio, log_ratio, register_divergence

Generator = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True, kw_only=True, slots=True)
class FDivergenceParams(DivergenceParams):
    f: Generator
    """Elementwise generator f(u) on a tensor u > 0; convex with f(1) = 0 (not checked)."""
    f_prime: Generator
    """Its derivative f′(u), elementwise (used by the sampled form only)."""

    def __post_init__(self) -> None:
        DivergenceParams.__post_init__(self)
        if not (callable(self.f) and callable(self.f_prime)):
            raise TypeError("f_divergence needs callables f and f_prime")


def f_divergence_sampled(log_u: torch.Tensor, p: FDivergenceParams) -> tuple[torch.Tensor, torch.Tensor]:
    """(f(u), f′(u)) at u = exp(log u).

    Args: log_u (B, T) = logp − logp_ref. Returns: f, f′ (B, T) in the dtype f returns for fp32-or-wider u.
    E_{y∼π_ref}[f(u)] = D_f(π‖π_ref); on y ∼ π average f(u)/u.
    """
    u = clamp_log_ratio(log_u, p).exp()
    return p.f(u), p.f_prime(u)


@register_divergence("f_divergence", FDivergenceParams, sampled=f_divergence_sampled)
def f_divergence(logp: torch.Tensor, logq: torch.Tensor, p: FDivergenceParams) -> torch.Tensor:
    """D_f(p‖q) = Σ_v q(v)·f(p(v)/q(v))   (Csiszár 1967; f-DPG arXiv:2302.08215).

    Args: logp, logq (..., V) normalized log-probs of the policy p and the anchor q.
    Returns: (...); ≥ 0 when f is convex with f(1) = 0. Entries with p = q = 0 add 0 (u taken as 1 there);
    with q = 0 < p the term is q·f(e^{log_ratio_clamp}) = 0 under a finite clamp, and 0·f(∞) (NaN for an f
    that grows without bound) with log_ratio_clamp = inf: the exact p·lim_{u→∞} f(u)/u is not computed.
    """
    u = log_ratio(logp, logq).clamp(-p.log_ratio_clamp, p.log_ratio_clamp).exp()
    return (logq.exp() * p.f(u)).sum(-1)
