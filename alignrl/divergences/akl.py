"""Adaptive KL (AKL): a per-token head/tail mix of forward and reverse KL.

Sort the anchor (teacher) q descending; head H = the top-ranked tokens whose cumulative q is ≤ μ, plus
the top-1 token; tail = the rest.
  g_head = Σ_{v∈H} |q(v) − p(v)|,   g_tail = Σ_{v∉H} |q(v) − p(v)|          (both detached)
  AKL(p, q) = g_head/(g_head + g_tail)·KL(q‖p) + g_tail/(g_head + g_tail)·KL(p‖q)
Early in KD, FKL fits the head and RKL the tail; AKL weights each by where the gap is.
Ref: Wu et al. 2024, "Rethinking Kullback-Leibler Divergence in Knowledge Distillation for Large
Language Models", arXiv:2404.02657 §4.
Deviations from the paper: the head set follows the authors' released code (cumulative mass ≤ μ, and
the top-1 token always in the head), not a "first ranks reaching μ" reading; when g_head + g_tail = 0
(p = q, so both KLs are 0) the weights are ½/½ instead of 0/0. No sampled form (the weights need both
full distributions).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignrl.divergences.base import DivergenceParams, register_divergence
from alignrl.divergences.kl import kl


@dataclass(frozen=True, kw_only=True, slots=True)
class AKLParams(DivergenceParams):
    mu: float = 0.5
    """Head mass μ ∈ [0, 1]: teacher ranks with cumulative probability ≤ μ form the head (paper: 0.5)."""

    def __post_init__(self) -> None:
        DivergenceParams.__post_init__(self)
        if not 0.0 <= self.mu <= 1.0:
            raise ValueError(f"akl mu must be in [0, 1], got {self.mu}")


def akl_head_weight(logp: torch.Tensor, logq: torch.Tensor, mu: float) -> torch.Tensor:
    """g_head/(g_head + g_tail) per row (detached); ½ where both gaps are 0. (..., V) -> (...)."""
    with torch.no_grad():
        q_sorted, order = logq.exp().sort(dim=-1, descending=True, stable=True)
        gap = (q_sorted - logp.exp().gather(-1, order)).abs()
        head = q_sorted.cumsum(-1) <= mu
        head[..., 0] = True
        g_head = (gap * head).sum(-1)
        total = gap.sum(-1)
        return torch.where(total > 0, g_head / torch.where(total > 0, total, 1.0), 0.5)


@register_divergence("akl", AKLParams)
def akl(logp: torch.Tensor, logq: torch.Tensor, p: AKLParams) -> torch.Tensor:
    """AKL = w·KL(q‖p) + (1 − w)·KL(p‖q),  w = sg(g_head/(g_head + g_tail))   (arXiv:2404.02657 §4).

    Args: logp (..., V) student/policy log-probs; logq (..., V) teacher/anchor log-probs (defines the head).
    Returns: (...) ≥ 0; gradients flow through the two KLs only.
    """
    w = akl_head_weight(logp, logq, p.mu)
    return w * kl(logq, logp) + (1.0 - w) * kl(logp, logq)
