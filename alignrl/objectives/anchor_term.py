"""The anchor term on policy samples: coef(step) · mask · D(π_θ ‖ π_anchor), per token (helper, not registered).

On tokens y_t ∼ π_θ with log u_t = log π_θ(y_t) − log π_anchor(y_t) (token-level, as GRPO/PPO do):

  KL estimators (D = reverse KL only): value_t = surrogate_t = k(logp, logp_anchor)   k ∈ {k1, k2, k3}
      (divergences/kl.py; k2's autograd gradient is ∇KL(π‖π_anchor), k3's is ∇KL(π_anchor‖π): see there)
  "f_sampled" (any registered f-divergence D_f(π‖q) = Σ q·f(π/q) with a sampled form):
      value_t     = f(u_t)/u_t                       (E_{y∼π}[f(u)/u] = D_f(π‖q): importance-weighted)
      surrogate_t = sg(f′(u_t) − f′(1)) · log π_θ(y_t) (∇_θ D_f = E_{y∼π}[f′(u)·∇log π]; −f′(1) is a
                                                         baseline: E_π[∇log π] = 0, so it only cuts variance)
  Loss placement: loss += coef(step) · aggregate(m_t · surrogate_t); reward placement: token_rewards_t −=
  coef(step) · m_t · value_t (PPO's KL-in-reward, no gradient through it).

coef(step): constant, or from ``start`` to ``end`` over ``steps`` steps, linearly or on a half cosine, or
adaptive (the loop feeds each step's measured divergence to ``adaptive_coef``; arXiv:1909.08593 §2.2).

Refs: Schulman 2020, "Approximating KL Divergence" (k1/k2/k3); GRPO arXiv:2402.03300 eq. 4 (k3 in the
loss); InstructGPT arXiv:2203.02155 eq. 2 (KL in the reward); Go et al. 2023, "Aligning Language Models
with Preferences through f-divergence Minimization", arXiv:2302.08215 (f-divergence anchors,
∇D_f = E_π[f′(u)∇log π]).
Deviations from the papers: the token-level per-position estimate stands in for the sequence-level
divergence, as every peer (TRL, verl, OpenRLHF) does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from alignrl.divergences.base import KL_ESTIMATORS, DivergenceParams
from alignrl.ops import upcast
from alignrl.registry import DIVERGENCES

ANCHOR_ESTIMATORS = ("k1", "k2", "k3", "f_sampled")
SCHEDULES = ("constant", "linear", "cosine", "adaptive")


@dataclass(frozen=True, kw_only=True, slots=True)
class CoefSchedule:
    start: float = 0.0
    """coef at step 0 (and at every step for ``constant``)."""
    end: float | None = None
    """coef at ``steps`` and after (None: equal to ``start``)."""
    steps: int = 0
    """Steps over which coef moves from start to end (0: the run's length, filled in by the loop)."""
    schedule: Literal["constant", "linear", "cosine", "adaptive"] = "constant"
    """adaptive: Ziegler et al.'s proportional controller from ``start`` towards ``target`` (``adaptive_coef``)."""
    target: float | None = None
    """adaptive: the divergence per token to hold (e.g. 0.05)."""
    horizon: int = 10000
    """adaptive: samples over which a ±20% error changes coef by ±20%."""

    def __post_init__(self) -> None:
        if self.schedule == "adaptive" and (self.target is None or self.target <= 0):
            raise ValueError("target must be > 0 with schedule: adaptive")
        if self.horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {self.horizon}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.start < 0 or (self.end is not None and self.end < 0):
            raise ValueError(f"start/end must be >= 0, got {self.start}, {self.end}")
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")


def coef_at(step: int, s: CoefSchedule, total_steps: int) -> float:
    """c(step) = start + (end − start)·g(min(1, step/N)), g(x) = x (linear) or (1 − cos πx)/2 (cosine)."""
    end = s.start if s.end is None else s.end
    if s.schedule == "constant" or end == s.start:
        return s.start
    n = s.steps or total_steps
    x = min(1.0, max(0.0, step / max(1, n)))
    g = x if s.schedule == "linear" else 0.5 * (1.0 - math.cos(math.pi * x))
    return s.start + (end - s.start) * g


def adaptive_coef(coef: float, measured: float, target: float, horizon: int, n_samples: int) -> float:
    """β ← β·(1 + clip(D/D_target − 1, −0.2, 0.2)·n/H)   (Ziegler et al. 2019, arXiv:1909.08593 §2.2).

    Args: coef β now; measured D this step; target D_target; horizon H; n_samples n sequences this step.
    """
    error = min(0.2, max(-0.2, measured / target - 1.0))
    return coef * (1.0 + error * n_samples / horizon)


def anchor_token_terms(
    logp: torch.Tensor,
    logp_anchor: torch.Tensor,
    *,
    divergence: str,
    estimator: str,
    params: DivergenceParams | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(value_t, surrogate_t) of D(π‖anchor) at sampled tokens; see the module docstring for both forms.

    Args: logp (B, T) log π_θ(y_t) (with grad for the surrogate); logp_anchor (B, T) log π_anchor(y_t), a
        constant; divergence a DIVERGENCES name; estimator k1 | k2 | k3 (reverse_kl only) | f_sampled;
        params the divergence's Params (defaults when None).
    Returns: value (B, T) detached, surrogate (B, T) whose autograd gradient estimates ∇_θ D.
    """
    logp_anchor = upcast(logp_anchor).detach()
    if estimator in ("k1", "k2", "k3"):
        if divergence != "reverse_kl":
            raise ValueError(f"estimator {estimator} estimates reverse_kl only; use f_sampled for {divergence}")
        est = KL_ESTIMATORS.entry(f"kl_{estimator}")
        k = est.fn(logp, logp_anchor, None, est.params())
        return k.detach(), k
    if estimator != "f_sampled":
        raise ValueError(f"estimator must be one of {', '.join(ANCHOR_ESTIMATORS)}, got {estimator!r}")
    entry = DIVERGENCES.entry(divergence)
    d = entry.fn
    if not d.has_sampled:
        raise ValueError(f"divergence {divergence!r} has no sampled form; pick an f-divergence")
    p = params if params is not None else entry.params()
    log_u = (upcast(logp).detach() - logp_anchor).clamp(-p.log_ratio_clamp, p.log_ratio_clamp)
    f, f_prime = d.sampled(log_u, p)
    _, f_prime_1 = d.sampled(torch.zeros((), dtype=log_u.dtype, device=log_u.device), p)
    value = f * torch.exp(-log_u)
    surrogate = (f_prime - f_prime_1).detach() * upcast(logp)
    return value.detach(), surrogate
