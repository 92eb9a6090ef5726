"""Where an anchor term applies: per-sample reward gates and per-token certainty weights (pure set).

Reward-gated mask (KDRL): the distillation/anchor term is kept only on rollouts that failed,
    m_{b,t} = mask_{b,t} · 1[r_b = 0]     (when="zero"; "nonpositive": 1[r_b ≤ 0]; "all": no gate)
Ref: Xu et al. 2025, "KDRL", arXiv:2506.02208 (reward-guided KD masking).

Critical-token certainty weights: the per-token KL penalty β·c_t·k_t uses
    c_t = (1−b)·u_t^a + b,   b ≤ 0  (so c = 1 at u = 1; c can be negative for uncertain tokens),
    u_t = max_v π_ref(v∣s_t)                          ("max_prob")
    u_t = 1 + log(max_v π_ref(v∣s_t)) / log V         ("negentropy_max_prob")
    u_t = 1 − H(π_ref(·∣s_t)) / log V                 ("negentropy", an alignrl extension)
Ref: Vassoyan, Beau & Plaud 2025, "Ignore the KL Penalty! Boosting Exploration on Critical Tokens to
Enhance RL Fine-Tuning", arXiv:2502.06533 (authors' code: jvasso/llm-rl-arithmetic).
Deviations from the papers: "negentropy" is not in the authors' code (there it is unimplemented).
These are mask builders, not anchor rules: they are not registered in ANCHORS.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from alignrl.ops import upcast

GATES = ("zero", "nonpositive", "all")
CERTAINTY_ESTIMATORS = ("max_prob", "negentropy_max_prob", "negentropy")


def reward_gated_mask(
    reward: torch.Tensor, mask: torch.Tensor, when: Literal["zero", "nonpositive", "all"] = "zero"
) -> torch.Tensor:
    """m_{b,t} = mask_{b,t} ∧ gate(r_b): gate 1[r_b = 0] ("zero"), 1[r_b ≤ 0] ("nonpositive"), 1 ("all").

    Args: reward (B,) per-rollout reward; mask (B, T) bool token mask; when the gate.
    Returns: (B, T) bool, True where the anchor term applies.
    Ref: arXiv:2506.02208 (KDRL: KD only on rollouts with reward 0).
    """
    if when == "zero":
        gate = reward == 0
    elif when == "nonpositive":
        gate = reward <= 0
    elif when == "all":
        gate = torch.ones_like(reward, dtype=torch.bool)
    else:
        raise ValueError(f"reward_gated_mask: when must be one of {GATES}, got {when!r}")
    if reward.shape != mask.shape[:1]:
        raise ValueError(f"reward_gated_mask: reward {tuple(reward.shape)} does not match mask {tuple(mask.shape)}")
    return mask.bool() & gate[:, None]


def certainty(
    logits_ref: torch.Tensor,
    estimator: Literal["max_prob", "negentropy_max_prob", "negentropy"] = "max_prob",
) -> torch.Tensor:
    """u_t ∈ [0, 1] from the reference's next-token distribution (see the module docstring).

    Args: logits_ref (B, T, V) reference logits; estimator which u. Returns: (B, T) in float32 or wider.
    Ref: arXiv:2502.06533.
    """
    logp = torch.log_softmax(upcast(logits_ref), dim=-1)  # (B, T, V)
    log_v = math.log(logp.shape[-1])
    if estimator == "max_prob":
        return logp.max(dim=-1).values.exp()
    if estimator == "negentropy_max_prob":
        return 1.0 + logp.max(dim=-1).values / log_v
    if estimator == "negentropy":
        entropy = -(logp.exp() * logp).sum(dim=-1)
        return 1.0 - entropy / log_v
    raise ValueError(f"certainty: estimator must be one of {CERTAINTY_ESTIMATORS}, got {estimator!r}")


def certainty_weights(
    logits_ref: torch.Tensor,
    mask: torch.Tensor,
    *,
    estimator: Literal["max_prob", "negentropy_max_prob", "negentropy"] = "max_prob",
    exponent: float = 1.0,
    intercept: float = 0.0,
) -> torch.Tensor:
    """c_t = ((1−b)·u_t^a + b)·mask_t: per-token weights of the KL penalty β·c_t·k_t.

    Args: logits_ref (B, T, V) reference (SFT) logits; mask (B, T) bool; estimator of u_t; exponent a;
        intercept b ≤ 0. Returns: (B, T) weights in float32 or wider, 0 where mask is False.
    Ref: arXiv:2502.06533 (prioritized KL penalty).
    """
    if intercept > 0.0:
        raise ValueError(f"certainty_weights: intercept must be ≤ 0 (so c = 1 at u = 1), got {intercept}")
    u = certainty(logits_ref, estimator)
    c = (1.0 - intercept) * u.pow(exponent) + intercept
    return c * mask.to(c.dtype)
