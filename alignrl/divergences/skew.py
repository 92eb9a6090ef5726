"""Skew KL and skew reverse KL (DistiLLM).

With the policy/student p and the anchor/teacher q (DistiLLM's p is our q, its q_θ our p):
skew_kl:          SKL_α(q, p)  = KL(q ‖ α·q + (1−α)·p)       α = 0: KL(q‖p) = forward_kl
                  f(u) = −log m,  m = α + (1−α)·u;           f′(u) = −(1−α)/m
skew_reverse_kl:  SRKL_α(q, p) = KL(p ‖ (1−α)·q + α·p)       α = 0: KL(p‖q) = reverse_kl
                  f(u) = u·log(u/m),  m = (1−α) + α·u;       f′(u) = log(u/m) + (1−α)/m
Mixing a little of the model's own distribution into the target bounds the log-ratio by −log α.
Refs: DistiLLM, Ko et al. 2024, arXiv:2402.03898 §3 (SKL / SRKL, α = 0.1; verify eq. numbers); DistiLLM-2, Ko et al.
2025, arXiv:2503.07067 (verify) (SKL on teacher responses + SRKL on student responses).
Gradient through the mixture (skew_reverse_kl's ``detach_mixture``): the value is the same either way.
  detach_mixture=False (default): autograd differentiates the student p inside M = (1−α)·q + α·p too,
    the exact gradient of SRKL_α. DistiLLM's released losses.py (github.com/jongwooko/distillm,
    ``skewed_reverse_kl``: ``mixed_probs = (1-lam)*teacher_probs + lam*student_probs``, no detach) does this.
  detach_mixture=True: M is built from sg(p), so the gradient is that of Σ p·(log p − log M̄) with M̄ held
    constant: ∇Σ p·log(p/M̄) = Σ ∇p·(log(p/M̄) + 1), missing the −Σ p·α·∇p/M term. DistiLLM-2's released
    trainer mixes in the detached student for its SRKL (per objectives/distillm2.py's note; not re-checked
    here, verify against github.com/jongwooko/distillm-2).
  skew_kl has no such switch: its student enters only through the mixture, so detaching it there would
    leave no gradient at all. (DistiLLM's ``skewed_forward_kl`` does not detach either.)
Zero-probability entries: p = q = 0 adds 0 to both; both stay ≤ −log α for α > 0 (finite even where one
distribution is 0); at α = 0 they are the plain KLs (+inf where the second argument is 0 < the first).
Deviations from the papers: none.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignrl.divergences.base import DivergenceParams, clamp_log_ratio, kl_div, log_mix, register_divergence


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

    detach_mixture: bool = False
    """Stop the gradient through the policy's share α·p of the mixture (same value; see the module
    docstring): False is DistiLLM's released code and the exact gradient, True DistiLLM-2's trainer."""


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
    detach_mixture: m is formed from sg(u) (f's autograd gradient only; f and f′ keep their values).
    """
    log_u = clamp_log_ratio(log_u, p)
    log_u_mix = log_u.detach() if p.detach_mixture else log_u
    log_m = log_mix(log_u_mix, torch.zeros_like(log_u), p.alpha)  # log(α·u + (1−α))
    return log_u.exp() * (log_u - log_m), (log_u - log_m) + (1.0 - p.alpha) * torch.exp(-log_m)


@register_divergence("skew_kl", SkewKLParams, sampled=skew_kl_sampled)
def skew_kl(logp: torch.Tensor, logq: torch.Tensor, p: SkewKLParams) -> torch.Tensor:
    """SKL_α = KL(q ‖ α·q + (1−α)·p) = Σ_v q·(log q − log(α·q + (1−α)·p))   (DistiLLM arXiv:2402.03898).

    Args: logp (..., V) student/policy log-probs; logq (..., V) teacher/anchor log-probs.
    Returns: (...) ≥ 0, at most −log α; α = 0 is forward_kl.
    """
    return kl_div(logq, log_mix(logq, logp, p.alpha))


@register_divergence("skew_reverse_kl", SkewReverseKLParams, sampled=skew_reverse_kl_sampled)
def skew_reverse_kl(logp: torch.Tensor, logq: torch.Tensor, p: SkewReverseKLParams) -> torch.Tensor:
    """SRKL_α = KL(p ‖ (1−α)·q + α·p) = Σ_v p·(log p − log((1−α)·q + α·p))   (DistiLLM arXiv:2402.03898).

    Args: logp (..., V) student/policy log-probs; logq (..., V) teacher/anchor log-probs.
    Returns: (...) ≥ 0, at most −log α; α = 0 is reverse_kl. With p.detach_mixture the mixture is built from
    sg(p): same value, gradient of Σ p·(log p − log M̄) with M̄ constant (DistiLLM-2's trainer).
    """
    logp_mix = logp.detach() if p.detach_mixture else logp
    return kl_div(logp, log_mix(logp_mix, logq, p.alpha))
