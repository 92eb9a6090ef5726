"""Adaptive KL (AKL): a per-token head/tail mix of forward and reverse KL.

Sort the anchor (teacher) q descending; head H = the top-ranked tokens whose cumulative q is ≤ μ, plus
the top-1 token; tail = the rest.
  g_head = Σ_{v∈H} |q(v) − p(v)|,   g_tail = Σ_{v∉H} |q(v) − p(v)|          (both detached)
  AKL(p, q) = g_head/(g_head + g_tail)·KL(q‖p) + g_tail/(g_head + g_tail)·KL(p‖q)
Early in KD, FKL fits the head and RKL the tail; AKL weights each by where the gap is.
Ref: Wu et al. 2024, "Rethinking Kullback-Leibler Divergence in Knowledge Distillation for Large
Language Models", arXiv:2404.02657 §4.
Deviations from the paper: the head set follows the authors' released code (cumulative mass ≤ μ, and
the top-1 token always in the head), not a "first ranks reaching μ" reading, with one rounding guard:
the cumulative mass c_k is compared as c_k ≤ μ·C·(1 + 16ε), C = c_V the row's total as computed (1 up
to rounding) and ε the working dtype's machine epsilon (fp32 1.2e-7, fp64 2.2e-16). The released
``cumsum <= mu`` drops the last ranks from the head whenever the float cumsum overshoots μ, which at
μ = 1 happens on a sizeable share of rows (the total exceeds 1 by a few ulps), so its μ = 1 was not
FKL. Here μ = 1 puts every token in the head (exactly: the sort is skipped and w = 1), so AKL(μ=1) is
forward_kl exactly (w·KL(q‖p) + (1 − w)·KL(p‖q) at w = 1, bit for bit), and a cumulative mass within
rounding of μ counts as reaching it. When g_head + g_tail = 0 (p = q, so both KLs are 0) the weights are
½/½ instead of 0/0. No sampled form (the weights need both full distributions).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignrl.divergences.base import DivergenceParams, register_divergence
from alignrl.divergences.kl import kl


@dataclass(frozen=True, kw_only=True, slots=True)
class AKLParams(DivergenceParams):
    mu: float = 0.5
    """Head mass μ ∈ [0, 1]: teacher ranks with cumulative probability ≤ μ (up to rounding, see the module
    docstring) form the head, with the top-1 token (paper: 0.5). μ = 1: every token, AKL = forward_kl;
    μ = 0: the top-1 token only."""

    def __post_init__(self) -> None:
        DivergenceParams.__post_init__(self)
        if not 0.0 <= self.mu <= 1.0:
            raise ValueError(f"akl mu must be in [0, 1], got {self.mu}")


HEAD_SLACK_EPS = 16
"""Relative slack of the head test c_k ≤ μ·C·(1 + HEAD_SLACK_EPS·ε), in machine epsilons ε of the dtype."""


def akl_head_weight(logp: torch.Tensor, logq: torch.Tensor, mu: float) -> torch.Tensor:
    """g_head/(g_head + g_tail) per row (detached); ½ where both gaps are 0. (..., V) -> (...).

    Head: the top-1 teacher token and the ranks k with c_k ≤ μ·C·(1 + 16ε), c_k the cumulative teacher
    mass in descending order and C = c_V; μ ≥ 1: every token (w = 1 exactly wherever a gap is nonzero).
    """
    with torch.no_grad():
        if mu >= 1.0:  # every token in the head: g_tail = 0, no sort, no rounding-dependent cutoff
            total = (logq.exp() - logp.exp()).abs().sum(-1)
            return torch.where(total > 0, 1.0, 0.5).to(total.dtype)
        q_sorted, order = logq.exp().sort(dim=-1, descending=True, stable=True)
        gap = (q_sorted - logp.exp().gather(-1, order)).abs()
        cum = q_sorted.cumsum(-1)
        slack = 1.0 + HEAD_SLACK_EPS * torch.finfo(cum.dtype).eps
        head = cum <= cum[..., -1:] * (mu * slack)
        del cum, q_sorted, order
        head[..., 0] = True
        g_head = (gap * head).sum(-1)
        total = gap.sum(-1)
        return torch.where(total > 0, g_head / torch.where(total > 0, total, 1.0), 0.5)


@register_divergence("akl", AKLParams)
def akl(logp: torch.Tensor, logq: torch.Tensor, p: AKLParams) -> torch.Tensor:
    """AKL = w·KL(q‖p) + (1 − w)·KL(p‖q),  w = sg(g_head/(g_head + g_tail))   (arXiv:2404.02657 §4).

    Args: logp (..., V) student/policy log-probs; logq (..., V) teacher/anchor log-probs (defines the head).
    Returns: (...) ≥ 0; gradients flow through the two KLs only. A KL with weight exactly 0 adds 0 even
    where it is +inf (μ = 1 is forward_kl exactly, also where q = 0 < p makes KL(p‖q) infinite).
    """
    w = akl_head_weight(logp, logq, p.mu)
    return _weighted_sum(w, kl(logq, logp)) + _weighted_sum(1.0 - w, kl(logp, logq))


def _weighted_sum(w: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """w·d with 0·d = 0 where w = 0 (d may be +inf there)."""
    return torch.where(w == 0, 0.0, w * d.masked_fill(w == 0, 0.0))
