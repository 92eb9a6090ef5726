"""Kullback–Leibler divergences (both directions) and the sampled KL(π‖π_ref) estimators k1, k2, k3.

reverse_kl: KL(p‖q) = Σ_v p·log(p/q)     f(u) = u·log u     (RLHF penalty; RKL in KD; mode-seeking)
forward_kl: KL(q‖p) = Σ_v q·log(q/p)     f(u) = −log u      (FKL in KD, teacher first; mass-covering)
jeffreys:   KL(p‖q) + KL(q‖p)            f(u) = (u−1)·log u (symmetric KL; D²O)
kl_k1/k2/k3 on y ∼ π with ℓ = log π(y) − log π_ref(y), r = π_ref(y)/π(y) = e^{−ℓ}:
  k1 = −log r = ℓ,   k2 = ½·(log r)²,   k3 = (r − 1) − log r
kl_importance_weighted: (π(y)/μ(y))·k3 on y ∼ μ (an older or behaviour policy).
Refs: Kullback & Leibler 1951; Jeffreys 1946 (Proc. R. Soc. A 186:453); f-DPO Table 1 (Wang et al. 2023, arXiv:2309.16240); J. Schulman,
"Approximating KL Divergence" (joschu.net/blog/kl-approx.html, 2020); DeepSeek-V3.2 "Unbiased KL
Estimate" (DeepSeek-AI 2025, arXiv:2512.02556, verify); gradient facts: Tang & Munos 2025, "On a few
pitfalls in KL divergence gradient estimation for RL" (arXiv:2506.09477, verify).
Deviations from the papers: exp() arguments are clamped at ±log_ratio_clamp (sampled forms and
estimators only; the full forms are exact).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from alignrl.divergences.base import (
    KL_ESTIMATORS,
    DivergenceParams,
    clamp_log_ratio,
    kl_div,
    log_ratio,
    register_divergence,
)
from alignrl.ops import upcast


def kl(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """KL(a‖b) = Σ_v a(v)·(log a(v) − log b(v)) over the last dim, from normalized log-probs.

    Entries with a = 0 add exactly 0 with a finite gradient (b = 0 there too or not); an entry with
    b = 0 < a makes it +inf, as by definition (base.kl_div).
    """
    return kl_div(log_a, log_b)


@dataclass(frozen=True, kw_only=True, slots=True)
class ReverseKLParams(DivergenceParams):
    """Reverse KL has no knobs beyond the shared ones."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ForwardKLParams(DivergenceParams):
    """Forward KL has no knobs beyond the shared ones."""


def reverse_kl_sampled(log_u: torch.Tensor, p: ReverseKLParams) -> tuple[torch.Tensor, torch.Tensor]:
    """f(u) = u·log u,  f′(u) = log u + 1   (f-DPO Table 1, arXiv:2309.16240).

    Args: log_u (B, T) = logp − logp_ref. Returns: f, f′ (B, T), fp32 or wider.
    E_{y∼π_ref}[f(u)] = KL(π‖π_ref); on y ∼ π, f(u)/u = log u is k1.
    """
    log_u = clamp_log_ratio(log_u, p)
    return log_u.exp() * log_u, log_u + 1.0


def forward_kl_sampled(log_u: torch.Tensor, p: ForwardKLParams) -> tuple[torch.Tensor, torch.Tensor]:
    """f(u) = −log u,  f′(u) = −1/u   (f-DPO Table 1; DPH-RL's generator on offline π_ref samples).

    Args: log_u (B, T) = logp − logp_ref. Returns: f, f′ (B, T), fp32 or wider.
    E_{y∼π_ref}[f(u)] = E_{π_ref}[log π_ref − log π] = KL(π_ref‖π).
    """
    log_u = clamp_log_ratio(log_u, p)
    return -log_u, -torch.exp(-log_u)


@dataclass(frozen=True, kw_only=True, slots=True)
class JeffreysParams(DivergenceParams):
    """Jeffreys has no knobs beyond the shared ones."""


def jeffreys_sampled(log_u: torch.Tensor, p: JeffreysParams) -> tuple[torch.Tensor, torch.Tensor]:
    """f(u) = (u − 1)·log u,  f′(u) = log u + 1 − 1/u   (sum of the two KL generators).

    Args: log_u (B, T) = logp − logp_ref. Returns: f, f′ (B, T), fp32 or wider.
    E_{y∼π_ref}[f(u)] = KL(π‖π_ref) + KL(π_ref‖π); on y ∼ π average f(u)/u.
    """
    log_u = clamp_log_ratio(log_u, p)
    return torch.expm1(log_u) * log_u, log_u - torch.expm1(-log_u)


@register_divergence("reverse_kl", ReverseKLParams, sampled=reverse_kl_sampled)
def reverse_kl(logp: torch.Tensor, logq: torch.Tensor, p: ReverseKLParams) -> torch.Tensor:
    """KL(p‖q) = Σ_v p(v)·(log p(v) − log q(v)): the RLHF penalty KL(π_θ‖π_ref); RKL in KD (MiniLLM).

    Args: logp, logq (..., V) normalized log-probs of the policy p and the anchor q.
    Returns: (...) ≥ 0; entries with p = 0 add 0, and one with q = 0 < p makes it +inf.
    Ref: Kullback & Leibler 1951; MiniLLM (reverse KLD for KD) arXiv:2306.08543.
    """
    return kl(logp, logq)


@register_divergence("forward_kl", ForwardKLParams, sampled=forward_kl_sampled)
def forward_kl(logp: torch.Tensor, logq: torch.Tensor, p: ForwardKLParams) -> torch.Tensor:
    """KL(q‖p) = Σ_v q(v)·(log q(v) − log p(v)): FKL in KD (teacher q first; the word-level KD loss).

    Args: logp, logq (..., V) normalized log-probs of the policy p and the anchor q.
    Returns: (...) ≥ 0; entries with q = 0 add 0, and one with p = 0 < q makes it +inf.
    Ref: Hinton et al. 2015, arXiv:1503.02531; GKD arXiv:2306.13649 §3.
    """
    return kl(logq, logp)


@register_divergence("jeffreys", JeffreysParams, sampled=jeffreys_sampled)
def jeffreys(logp: torch.Tensor, logq: torch.Tensor, p: JeffreysParams) -> torch.Tensor:
    """J(p, q) = KL(p‖q) + KL(q‖p) = Σ_v (p(v) − q(v))·(log p(v) − log q(v))   (Jeffreys 1946; D²O's symmetric KL).

    Args: logp, logq (..., V) normalized log-probs of the policy p and the anchor q.
    Returns: (...) ≥ 0, symmetric. Entries where p = q = 0 add 0 (finite gradient); one where exactly one
    of them is 0 makes it +inf (also when the other underflows to 0 in the working precision).
    """
    ell = log_ratio(logp, logq)  # our own temporary: edited in place
    infinite = torch.isinf(ell)  # exactly one of p, q is 0: the term is the constant +inf (never 0·inf)
    ell.masked_fill_(infinite, 0.0)
    return ((logp.exp() - logq.exp()) * ell).masked_fill_(infinite, math.inf).sum(-1)


# ---- sampled KL(π‖π_ref) estimators: est(logp, logp_ref, logp_behavior, p) -> (B, T) ---------------------

@dataclass(frozen=True, kw_only=True, slots=True)
class KLEstimatorParams:
    log_ratio_clamp: float = 20.0
    """Cap on |log r| and |log(π/μ)| before exp() (k3 and importance weights); exp(20) ≈ 4.9e8."""

    def __post_init__(self) -> None:
        if not self.log_ratio_clamp > 0:
            raise ValueError(f"log_ratio_clamp must be > 0, got {self.log_ratio_clamp}")


def _log_ratio(logp: torch.Tensor, logp_ref: torch.Tensor) -> torch.Tensor:
    return upcast(logp) - upcast(logp_ref)  # ℓ = log π − log π_ref = −log r


def _weighted(k: torch.Tensor, logp: torch.Tensor, logp_behavior: torch.Tensor | None, c: float) -> torch.Tensor:
    """k on y ∼ π (behavior None), or w·k with w = π(y)/μ(y) on y ∼ μ; w keeps its gradient in logp."""
    if logp_behavior is None:
        return k
    return k * (upcast(logp) - upcast(logp_behavior)).clamp(-c, c).exp()


@KL_ESTIMATORS.register("kl_k1", params=KLEstimatorParams)
def kl_k1(
    logp: torch.Tensor, logp_ref: torch.Tensor, logp_behavior: torch.Tensor | None, p: KLEstimatorParams,
) -> torch.Tensor:
    """k1 = −log r = log π(y) − log π_ref(y)   (Schulman 2020).

    Args: logp, logp_ref (B, T) at sampled tokens; logp_behavior (B, T) log μ of the sampler, or None when
    y ∼ π itself (then w ≡ 1; else the estimate is w·k1, w = π/μ, for y ∼ μ).
    Returns: (B, T). E_{y∼π}[k1] = KL(π‖π_ref): unbiased, high variance, negative values possible.
    As a loss without weights its gradient is E_π[∇log π] = 0; passing logp_behavior = logp.detach()
    restores the score term: E[∇(w·k1)] = E_π[(ℓ + 1)∇log π] = ∇KL.
    """
    return _weighted(_log_ratio(logp, logp_ref), logp, logp_behavior, p.log_ratio_clamp)


@KL_ESTIMATORS.register("kl_k2", params=KLEstimatorParams)
def kl_k2(
    logp: torch.Tensor, logp_ref: torch.Tensor, logp_behavior: torch.Tensor | None, p: KLEstimatorParams,
) -> torch.Tensor:
    """k2 = ½·(log r)² = ½·(log π(y) − log π_ref(y))²   (Schulman 2020; KDRL's choice).

    Args: as kl_k1. Returns: (B, T) ≥ 0 (w·k2 with a behaviour policy).
    E_{y∼π}[k2] = D_f(π_ref‖π) with f(x) = ½(log x)², equal to KL(π‖π_ref) to second order in log r
    (biased, low variance). As a loss on y ∼ π its gradient is
    E_π[ℓ·∇log π] = ∇KL(π‖π_ref) exactly: an unbiased gradient of the reverse KL.
    """
    return _weighted(0.5 * _log_ratio(logp, logp_ref).square(), logp, logp_behavior, p.log_ratio_clamp)


@KL_ESTIMATORS.register("kl_k3", params=KLEstimatorParams)
def kl_k3(
    logp: torch.Tensor, logp_ref: torch.Tensor, logp_behavior: torch.Tensor | None, p: KLEstimatorParams,
) -> torch.Tensor:
    """k3 = (r − 1) − log r,  r = π_ref(y)/π(y)   (Schulman 2020; GRPO arXiv:2402.03300 eq. 4).

    Args: as kl_k1. Returns: (B, T) ≥ 0 (w·k3 with a behaviour policy).
    E_{y∼π}[k3] = KL(π‖π_ref): unbiased, low variance. As an unweighted loss its gradient is
    E_π[(1 − r)·∇log π] = ∇KL(π_ref‖π), the forward-KL gradient; weight it (logp_behavior) for ∇KL(π‖π_ref).
    """
    log_r = (-_log_ratio(logp, logp_ref)).clamp(-p.log_ratio_clamp, p.log_ratio_clamp)
    return _weighted(torch.expm1(log_r) - log_r, logp, logp_behavior, p.log_ratio_clamp)


@KL_ESTIMATORS.register("kl_importance_weighted", params=KLEstimatorParams)
def kl_importance_weighted(
    logp: torch.Tensor, logp_ref: torch.Tensor, logp_behavior: torch.Tensor | None, p: KLEstimatorParams,
) -> torch.Tensor:
    """(π(y)/μ(y))·k3 on y ∼ μ: DeepSeek-V3.2's unbiased KL estimate (arXiv:2512.02556, verify).

    Args: logp (B, T) log π_θ (with grad); logp_ref (B, T); logp_behavior (B, T) log μ, required (the
    rollout / old policy that sampled y, detached).
    Returns: (B, T) ≥ 0. E_{y∼μ}[w·k3] = Σ_y π·k3 = KL(π‖π_ref) as a function of θ, so both the value
    and its autograd gradient are unbiased for the reverse KL on off-policy samples.
    """
    if logp_behavior is None:
        raise ValueError("kl_importance_weighted needs logp_behavior (log-probs of the sampling policy)")
    return kl_k3(logp, logp_ref, logp_behavior, p)
