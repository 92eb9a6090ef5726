"""Tsallis relative entropy (Tsallis-q KL).

D_q(p‖r) = −Σ_v p·ln_q(r/p) = (Σ_v p^q·r^{1−q} − 1)/(q − 1),   ln_q(x) = (x^{1−q} − 1)/(1 − q),  q > 0
  q → 1: KL(p‖r);  q = 2: χ²(p‖r);  D_q = q·D_α at α = q (alpha.py)
f(u) = (u^q − u)/(q − 1),   f′(u) = (q·u^{q−1} − 1)/(q − 1)
(the anchor is called r here only to keep q free for Tsallis' index; elsewhere it is q.)
Refs: Tsallis 1998, Phys. Rev. E 58:1442; MVI(q), Zhu et al. 2023, "Generalized Munchausen RL using
Tsallis KL Divergence", arXiv:2301.11476 (§3, D_q(π‖μ) = E_π[−ln_q(μ/π)]).
Deviations from the papers: none; computed as Σ p·expm1((q−1)·ℓ)/(q−1), exact at q = 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignrl.divergences.base import DivergenceParams, clamp_log_ratio, expm1_ratio, register_divergence


@dataclass(frozen=True, kw_only=True, slots=True)
class TsallisParams(DivergenceParams):
    q: float = 2.0
    """Tsallis index q > 0; q = 1 is KL(p‖r), q = 2 is Pearson χ², q > 1 penalizes p ≫ r harder."""

    def __post_init__(self) -> None:
        DivergenceParams.__post_init__(self)
        if not 0.0 < self.q < float("inf"):
            raise ValueError(f"tsallis q must be a finite number > 0, got {self.q}")


def tsallis_sampled(log_u: torch.Tensor, p: TsallisParams) -> tuple[torch.Tensor, torch.Tensor]:
    """f(u) = (u^q − u)/(q − 1),  f′(u) = (q·u^{q−1} − 1)/(q − 1); at q = 1: u·log u, log u + 1.

    Args: log_u (B, T) = logp − logp_ref. Returns: f, f′ (B, T), fp32 or wider.
    E_{y∼π_ref}[f(u)] = D_q(π‖π_ref); on y ∼ π average f(u)/u = (u^{q−1} − 1)/(q − 1) = −ln_q(1/u).
    """
    log_u = clamp_log_ratio(log_u, p)
    g = expm1_ratio(torch.zeros_like(log_u), log_u, p.q - 1.0)  # (u^{q−1} − 1)/(q − 1)
    return log_u.exp() * g, p.q * g + 1.0


@register_divergence("tsallis", TsallisParams, sampled=tsallis_sampled)
def tsallis(logp: torch.Tensor, logq: torch.Tensor, p: TsallisParams) -> torch.Tensor:
    """D_q(p‖r) = (Σ_v p(v)^q·r(v)^{1−q} − 1)/(q − 1)   (Tsallis 1998; MVI(q) arXiv:2301.11476).

    Args: logp (..., V) policy log-probs; logq (..., V) anchor log-probs (r above).
    Returns: (...) ≥ 0; q = 1 → KL(p‖r) exactly. Entries with p = r = 0 add 0; one with r = 0 < p makes
    it +inf for q ≥ 1 and adds p/(1 − q) for q < 1.
    """
    return expm1_ratio(logp, logp - logq, p.q - 1.0).sum(-1)
