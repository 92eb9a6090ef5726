"""REINFORCE with a plain baseline: A = R − b, the same value on every response token.

    b = 0 | c | mean_B R | mean_g R          (baseline = none | constant | batch_mean | group_mean)

Refs: Williams 1992, "Simple statistical gradient-following algorithms" (REINFORCE with baseline b);
used with a mean baseline by WARP (Ramé et al. 2024, arXiv:2406.16768 §3) and MiniLLM.
Deviations from the papers: none (a value-model baseline is GAE with λ = 1, see ``gae``).
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
class BaselineParams:
    baseline: Literal["none", "constant", "batch_mean", "group_mean"] = "batch_mean"
    """What is subtracted from the return: nothing, ``constant``, the batch mean, or the prompt group's mean."""
    constant: float = 0.0
    """The baseline value for ``baseline="constant"``."""

    @property
    def group_local(self) -> bool:
        """Whether a row's advantage depends on its prompt group alone (a streamed step trains part by part)."""
        return self.baseline != "batch_mean"


@ADVANTAGES.register("baseline", params=BaselineParams)
@torch.no_grad()
def baseline_advantages(x: AdvantageInputs, p: BaselineParams) -> AdvantageOut:
    """A_{i,t} = R_i − b on every response token of sample i.

    Args: x.rewards (B,), x.mask (B, T), x.token_rewards (B, T) optional, x.group_index (B,) for group_mean.
    Returns: AdvantageOut(adv (B, T), returns=None).
    Ref: Williams 1992, Machine Learning 8 (REINFORCE: Δw = α·(r − b)·∂ln π/∂w, reinforcement baseline b).
    """
    r = sequence_returns(x)  # (B,)
    if p.baseline == "none":
        b = torch.zeros_like(r)
    elif p.baseline == "constant":
        b = torch.full_like(r, p.constant)
    elif p.baseline == "batch_mean":
        b = r.mean().expand_as(r)
    elif p.baseline == "group_mean":
        b = group_mean_std(r, require(x, "group_index", "baseline(group_mean)"))[0]
    else:
        raise ValueError(f"unknown baseline {p.baseline!r}")
    return AdvantageOut(broadcast_to_tokens(r - b, x.mask))
