"""GRPO group-normalised advantages (and Dr. GRPO's unscaled variant).

Each prompt x gets G sampled responses with sequence returns R_1..R_G (see ``base`` for how the outcome
reward and dense rewards combine into R). The advantage of response i is shared by all its tokens:

    A_i = (R_i − mean_g(R)) / (std_g(R) + eps)      scale_std=True   (GRPO)
    A_i =  R_i − mean_g(R)                          scale_std=False  (Dr. GRPO)

Refs: Shao et al. 2024, DeepSeekMath, arXiv:2402.03300 §4.1.2 (outcome supervision, Â_{i,t} = r̃_i);
Liu et al. 2025, Understanding R1-Zero-Like Training (Dr. GRPO), arXiv:2503.20783 §3.2 (drop the std).
Deviations from the papers: std uses Bessel's correction (n−1) by default, as TRL and verl do
(``unbiased_std``); ``std_scope="batch"`` divides by the batch std instead of the group's (TRL
``scale_rewards="batch"``, Liu et al. 2025 "Tricks or Traps", arXiv:2508.08221); a one-sample group gets
std 0, so its advantage is 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from alignrl.advantages.base import (
    AdvantageInputs,
    AdvantageOut,
    broadcast_to_tokens,
    group_mean_std,
    require,
    sequence_returns,
)
from alignrl.registry import ADVANTAGES


@dataclass(frozen=True, kw_only=True, slots=True)
class GRPOParams:
    scale_std: bool = True
    """Divide by the std (GRPO); False keeps R − mean only (Dr. GRPO)."""
    std_scope: Literal["group", "batch"] = "group"
    """Whose std divides: the prompt's group (GRPO) or the whole batch (TRL scale_rewards='batch')."""
    unbiased_std: bool = True
    """Bessel's correction (n − 1) in the std, as torch.std, TRL and verl."""
    eps: float = 1e-6
    """Added to the std: a group whose rewards are all equal gets advantage 0, not 0/0."""

    @property
    def group_local(self) -> bool:
        """Whether a row's advantage depends on its prompt group alone (a streamed step trains part by part)."""
        return self.std_scope == "group"


@ADVANTAGES.register("grpo", params=GRPOParams)
@torch.no_grad()
def grpo_advantages(x: AdvantageInputs, p: GRPOParams) -> AdvantageOut:
    """A_{i,t} = (R_i − mean_g R) / (std R + eps) on every response token of sample i (or R_i − mean_g R).

    Args: x.rewards (B,), x.mask (B, T), x.group_index (B,) (required), x.token_rewards (B, T) optional.
    Returns: AdvantageOut(adv (B, T), returns=None).
    Ref: arXiv:2402.03300 §4.1.2; Dr. GRPO arXiv:2503.20783 §3.2.
    """
    group_index = require(x, "group_index", "grpo")
    r = sequence_returns(x)  # (B,)
    mean, std, _ = group_mean_std(r, group_index, p.unbiased_std)
    adv = r - mean
    if p.scale_std:
        if p.std_scope == "batch":
            std = group_mean_std(r, torch.zeros_like(group_index), p.unbiased_std)[1]
        adv = adv / (std + p.eps)
    return AdvantageOut(broadcast_to_tokens(adv, x.mask))
