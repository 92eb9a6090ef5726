"""Skew KL and skew reverse KL (DistiLLM).

With the policy/student p and the anchor/teacher q (DistiLLM's p is our q, its q_θ our p):
skew_kl:          SKL_α(q, p)  = KL(q ‖ α·q + (1−α)·p)       α = 0: KL(q‖p) = forward_kl
                  f(u) = −log m,  m = α + (1−α)·u;           f′(u) = −(1−α)/m
skew_reverse_kl:  SRKL_α(q, p) = KL(p ‖ (1−α)·q + α·p)       α = 0: KL(p‖q) = reverse_kl
                  f(u) = u·log(u/m),  m = (1−α) + α·u;       f′(u) = log(u/m) + (1−α)/m
Mixing a little of the model's own distribution into the target bounds the log-ratio by −log α.
Refs: DistiLLM, Ko et al. 2024, arXiv:2402.03898 §3 (SKL / SRKL, α = 0.1; verify eq. numbers); DistiLLM-2, Ko et al.
2025, arXiv:2503.07067 (verify) (SKL on teacher responses + SRKL on student responses).
Deviations from the papers: none; gradients flow through the mixture, as in the DistiLLM code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignrl.divergences.base import DivergenceParams, clamp_log_ratio, expect, log_mix, register_divergence


@dataclass(frozen=True, kw_only=True, slots=True)
class _SkewParams(DivergenceParams):
    alpha: float = 0.1
    """Skew α ∈ [0, 1): the share of the first argument mixed into the second (DistiLLM default 0.1)."""

    def __post_init__(self) -> None:
        DivergenceParams.__post_init__(self)
        if not 0.0 <= self.alpha < 1.0:
            raise ValueError(f"skew alpha must be in [0, 1), got {self.alpha}")


@dataclass(frozen=True, kw_only=True, slots=True)
class SkewKLParams(_SkewParams):
    """Skew (forward) KL: KL(q ‖ α·q + (1−α)·p)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class SkewReverseKLParams(_SkewParams):
    """Skew reverse KL: KL(p ‖ (1−α)·q + α·p)."""


def skew_kl_sampled(log_u: torch.Tensor, p: SkewKLParams) -> tuple[torch.Tensor, torch.Tensor]:
    """f(u) = −log(α + (1−α)·u),  f′(u) = −(1−α)/(α + (1−α)·u).

    Args: log_u (B, T) = logp − logp_ref. Returns: f, f′ (B, T), fp32 or wider.
    E_{y∼π_ref}[f(u)] = KL(π_ref ‖ α·π_ref + (1−α)·π); on y ∼ π average f(u)/u.
    """
    log_u = clamp_log_ratio(log_u, p)
    log_m = log_mix(torch.zeros_like(log_u), log_u, p.alpha)  # log(α + (1−α)·u)
    return -log_m, -(1.0 - p.alpha) * torch.exp(-log_m)


def skew_reverse_kl_sampled(log_u: torch.Tensor, p: SkewReverseKLParams) -> tuple[torch.Tensor, torch.Tensor]:
    """f(u) = u·log(u/m),  f′(u) = log(u/m) + (1−α)/m,  m = (1−α) + α·u.

    Args: log_u (B, T) = logp − logp_ref. Returns: f, f′ (B, T), fp32 or wider.
    E_{y∼π_ref}[f(u)] = KL(π ‖ (1−α)·π_ref + α·π); on y ∼ π average f(u)/u = log(u/m).
    """
    log_u = clamp_log_ratio(log_u, p)
    log_m = log_mix(log_u, torch.zeros_like(log_u), p.alpha)  # log(α·u + (1−α))
    return log_u.exp() * (log_u - log_m), (log_u - log_m) + (1.0 - p.alpha) * torch.exp(-log_m)


@register_divergence("skew_kl", SkewKLParams, sampled=skew_kl_sampled)
def skew_kl(logp: torch.Tensor, logq: torch.Tensor, p: SkewKLParams) -> torch.Tensor:
    """SKL_α = KL(q ‖ α·q + (1−α)·p) = Σ_v q·(log q − log(α·q + (1−α)·p))   (DistiLLM arXiv:2402.03898).

    Args: logp (..., V) student/policy log-probs; logq (..., V) teacher/anchor log-probs.
    Returns: (...) ≥ 0, at most −log α; α = 0 is forward_kl.
    """
    return expect(logq, logq - log_mix(logq, logp, p.alpha))


@register_divergence("skew_reverse_kl", SkewReverseKLParams, sampled=skew_reverse_kl_sampled)
def skew_reverse_kl(logp: torch.Tensor, logq: torch.Tensor, p: SkewReverseKLParams) -> torch.Tensor:
    """SRKL_α = KL(p ‖ (1−α)·q + α·p) = Σ_v p·(log p − log((1−α)·q + α·p))   (DistiLLM arXiv:2402.03898).

    Args: logp (..., V) student/policy log-probs; logq (..., V) teacher/anchor log-probs.
    Returns: (...) ≥ 0, at most −log α; α = 0 is reverse_kl.
    """
    return expect(logp, logp - log_mix(logp, logq, p.alpha))
