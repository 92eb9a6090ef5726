"""Amari α-divergence (Cichocki–Amari parametrization).

D_α(p‖q) = (1 − Σ_v p^α·q^{1−α}) / (α·(1−α)),   α ∈ ℝ
  α → 1: KL(p‖q) (reverse_kl),  α → 0: KL(q‖p) (forward_kl),  α = ½: 4·H²(p, q),  α = 2: ½·χ²(p‖q)
f(u) = (u^α − α·u − (1−α)) / (α·(α−1)),   f′(u) = (u^{α−1} − 1) / (α−1)
Refs: Amari 1985 (Differential-Geometrical Methods in Statistics); Cichocki & Amari 2010, "Families of
Alpha- Beta- and Gamma-Divergences", Entropy 12:1532; f-DPO Table 1 (arXiv:2309.16240).
Deviations from the papers: f-DPO writes f(u) = (u^{1−α} − (1−α)·u − α)/(α·(α−1)), i.e. its α is our
1 − α (its α → 0 is reverse KL). Amari's original 4/(1 − α_A²)·(1 − Σ p^{(1−α_A)/2}·q^{(1+α_A)/2}) is
ours at α = (1 − α_A)/2, identically. Computed as Σ w·expm1(c·ℓ)/c (w = p, c = α−1 for
α ≥ ½; w = q, c = α otherwise), exact at α ∈ {0, 1} and free of the 1 − Σ cancellation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from alignrl.divergences.base import DivergenceParams, clamp_log_ratio, expm1_ratio, register_divergence


@dataclass(frozen=True, kw_only=True, slots=True)
class AlphaParams(DivergenceParams):
    alpha: float = 0.5
    """α of D_α; 1 gives KL(p‖q), 0 gives KL(q‖p), ½ gives 4× squared Hellinger. Any finite real."""

    def __post_init__(self) -> None:
        DivergenceParams.__post_init__(self)
        if not math.isfinite(self.alpha):
            raise ValueError(f"alpha must be finite, got {self.alpha}")


def alpha_dense(logp: torch.Tensor, logq: torch.Tensor, alpha: float) -> torch.Tensor:
    """D_α(p‖q) over the last dim of normalized log-probs (see module docstring for the two forms)."""
    ell = logp - logq
    if alpha >= 0.5:  # Σ p·(u^{α−1} − 1)/(α−1) / α = (Σ p^α q^{1−α} − 1)/(α(α−1))
        return expm1_ratio(logp, ell, alpha - 1.0).sum(-1) / alpha
    return -expm1_ratio(logq, ell, alpha).sum(-1) / (1.0 - alpha)  # −Σ q·(u^α − 1)/α / (1−α)


def alpha_generator(log_u: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """f(u) = (u^α − α·u − (1−α))/(α(α−1)), f′(u) = (u^{α−1} − 1)/(α−1); log_u already clamped."""
    zero = torch.zeros_like(log_u)
    u_minus_1 = torch.expm1(log_u)
    f_prime = expm1_ratio(zero, log_u, alpha - 1.0)
    if alpha >= 0.5:  # [u·(u^{α−1} − 1)/(α−1) − (u − 1)]/α
        f = (expm1_ratio(log_u, log_u, alpha - 1.0) - u_minus_1) / alpha
    else:  # [(u − 1) − (u^α − 1)/α]/(1−α)
        f = (u_minus_1 - expm1_ratio(zero, log_u, alpha)) / (1.0 - alpha)
    return f, f_prime


def alpha_sampled(log_u: torch.Tensor, p: AlphaParams) -> tuple[torch.Tensor, torch.Tensor]:
    """f(u) = (u^α − α·u − (1−α))/(α·(α−1)),  f′(u) = (u^{α−1} − 1)/(α−1)   (f-DPO Table 1 with α ↔ 1−α).

    Args: log_u (B, T) = logp − logp_ref. Returns: f, f′ (B, T), fp32 or wider; f ≥ 0, f(1) = f′(1) = 0.
    E_{y∼π_ref}[f(u)] = D_α(π‖π_ref); on y ∼ π average f(u)/u. At α = 1: f = u·log u − u + 1, f′ = log u.
    """
    return alpha_generator(clamp_log_ratio(log_u, p), p.alpha)


@register_divergence("alpha", AlphaParams, sampled=alpha_sampled)
def alpha(logp: torch.Tensor, logq: torch.Tensor, p: AlphaParams) -> torch.Tensor:
    """D_α(p‖q) = (1 − Σ_v p(v)^α·q(v)^{1−α}) / (α·(1−α))   (Cichocki & Amari 2010, Entropy 12:1532).

    Args: logp, logq (..., V) normalized log-probs of the policy p and the anchor q.
    Returns: (...) ≥ 0; α = 1 → KL(p‖q), α = 0 → KL(q‖p) exactly. Entries with p = q = 0 add 0; one with
    q = 0 < p makes it +inf for α ≥ 1 (p = 0 < q: for α ≤ 0) and adds its finite limit otherwise.
    """
    return alpha_dense(logp, logq, p.alpha)
