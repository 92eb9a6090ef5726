"""Jensen–Shannon divergence and the generalized (skewed) JSD(β) of GKD.

JSD_β(p‖q) = β·KL(q‖M) + (1−β)·KL(p‖M),  M = β·q + (1−β)·p,  0 < β < 1
As an f-divergence (u = p/q, m(u) = β + (1−β)·u = M/q):
  f(u)  = (1−β)·u·log u − m(u)·log m(u),    f′(u) = (1−β)·log(u/m(u))
js = JSD_{½} = ½·KL(p‖M) + ½·KL(q‖M):  f(u) = ½·[u·log u − (u+1)·log((u+1)/2)]  (DPH-RL's generator).
Refs: Lin 1991 (IEEE Trans. Inf. Theory 37(1):145); GKD, Agarwal et al. 2024, arXiv:2306.13649 eq. (1)
(their JSD(β)(P‖Q_θ) with P the teacher = our anchor q, Q_θ the student = our policy p, same β);
f-DPO Table 1, arXiv:2309.16240 (JS generator, ×2 relative to ours); TRL GKDTrainer.generalized_jsd_loss.
Deviations from the papers: f-DPO's JS generator u·log u − (u+1)·log((u+1)/2) is 2·JSD; we use the ½
form so that full and sampled forms agree. TRL special-cases β = 0 as KL(q‖p) and β = 1 as KL(p‖q);
here β must lie strictly inside (0, 1) (at the endpoints the formula is identically 0): use
forward_kl / reverse_kl for those.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignrl.divergences.base import DivergenceParams, clamp_log_ratio, kl_div, log_mix, register_divergence


@dataclass(frozen=True, kw_only=True, slots=True)
class JSParams(DivergenceParams):
    """JS has no knobs beyond the shared ones (it is JSD_β at β = ½)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class GeneralizedJSDParams(DivergenceParams):
    beta: float = 0.5
    """Weight of the anchor q in M = β·q + (1−β)·p (GKD's β; TRL GKDConfig.beta); 0 < β < 1.
    β → 0 behaves like β·KL(q‖p) (forward), β → 1 like (1−β)·KL(p‖q) (reverse)."""

    def __post_init__(self) -> None:
        DivergenceParams.__post_init__(self)
        if not 0.0 < self.beta < 1.0:
            raise ValueError(f"generalized_jsd beta must be in (0, 1), got {self.beta} (use forward_kl / reverse_kl)")


def jsd_beta(logp: torch.Tensor, logq: torch.Tensor, beta: float) -> torch.Tensor:
    """β·KL(q‖M) + (1−β)·KL(p‖M), M = β·q + (1−β)·p, over the last dim of normalized log-probs."""
    log_m = log_mix(logq, logp, beta)
    return beta * kl_div(logq, log_m) + (1.0 - beta) * kl_div(logp, log_m)


def jsd_beta_generator(log_u: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """f(u) = (1−β)·u·log u − m·log m, f′(u) = (1−β)·log(u/m), m = β + (1−β)·u; log_u already clamped."""
    log_m = log_mix(torch.zeros_like(log_u), log_u, beta)  # log(β·1 + (1−β)·u)
    f = (1.0 - beta) * log_u.exp() * log_u - log_m.exp() * log_m
    return f, (1.0 - beta) * (log_u - log_m)


def js_sampled(log_u: torch.Tensor, p: JSParams) -> tuple[torch.Tensor, torch.Tensor]:
    """f(u) = ½·[u·log u − (u+1)·log((u+1)/2)],  f′(u) = ½·log(2u/(u+1))   (DPH-RL; ½× f-DPO Table 1).

    Args: log_u (B, T) = logp − logp_ref. Returns: f, f′ (B, T), fp32 or wider.
    E_{y∼π_ref}[f(u)] = JS(π, π_ref); on y ∼ π average f(u)/u.
    """
    return jsd_beta_generator(clamp_log_ratio(log_u, p), 0.5)


def generalized_jsd_sampled(log_u: torch.Tensor, p: GeneralizedJSDParams) -> tuple[torch.Tensor, torch.Tensor]:
    """f(u) = (1−β)·u·log u − m·log m,  f′(u) = (1−β)·log(u/m),  m = β + (1−β)·u.

    Args: log_u (B, T) = logp − logp_ref. Returns: f, f′ (B, T), fp32 or wider.
    E_{y∼π_ref}[f(u)] = JSD_β(π‖π_ref) with π_ref in the role of GKD's teacher; on y ∼ π average f(u)/u.
    """
    return jsd_beta_generator(clamp_log_ratio(log_u, p), p.beta)


@register_divergence("js", JSParams, sampled=js_sampled)
def js(logp: torch.Tensor, logq: torch.Tensor, p: JSParams) -> torch.Tensor:
    """JS(p, q) = ½·KL(p‖M) + ½·KL(q‖M),  M = ½·(p + q); symmetric, 0 ≤ JS ≤ log 2.

    Args: logp, logq (..., V) normalized log-probs of the policy p and the anchor q.
    Returns: (...). Ref: Lin 1991; DPH-RL (JS to π_0 as a rehearsal anchor); f-DPG arXiv:2302.08215.
    """
    return jsd_beta(logp, logq, 0.5)


@register_divergence("generalized_jsd", GeneralizedJSDParams, sampled=generalized_jsd_sampled)
def generalized_jsd(logp: torch.Tensor, logq: torch.Tensor, p: GeneralizedJSDParams) -> torch.Tensor:
    """JSD_β(p‖q) = β·KL(q‖M) + (1−β)·KL(p‖M),  M = β·q + (1−β)·p   (GKD arXiv:2306.13649 eq. 1).

    Args: logp (..., V) student/policy log-probs; logq (..., V) teacher/anchor log-probs (GKD's P).
    Returns: (...) ≥ 0. Equals TRL's generalized_jsd_loss(student, teacher, beta) per token for 0 < β < 1.
    """
    return jsd_beta(logp, logq, p.beta)
