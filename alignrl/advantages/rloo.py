"""RLOO: REINFORCE with a leave-one-out baseline over the G samples of a prompt.

    A_i = R_i − (1/(n_g − 1)) Σ_{j∈g, j≠i} R_j  =  n_g/(n_g − 1) · (R_i − mean_g R)

broadcast to every response token of sample i. Optional whitening over the batch (TRL
``normalize_advantages``): A ← (A − mean_B A)/(std_B A + eps).
Refs: Ahmadian et al. 2024, Back to Basics, arXiv:2402.14740 §3 (RLOO estimator; eq. number to verify); Kool et al. 2019,
"Buy 4 REINFORCE Samples, Get a Baseline for Free!" (ICLR workshop).
Deviations from the papers: a one-sample group has no leave-one-out baseline; its advantage is 0
(as TRL). Whitening is not in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignrl.advantages.base import (
    AdvantageInputs,
    AdvantageOut,
    broadcast_to_tokens,
    group_mean_std,
    masked_whiten,
    require,
    sequence_returns,
)
from alignrl.registry import ADVANTAGES


@dataclass(frozen=True, kw_only=True, slots=True)
class RLOOParams:
    whiten: bool = False
    """Whiten the advantages over the batch after the baseline (TRL normalize_advantages)."""
    eps: float = 1e-6
    """Added to the batch std when whitening."""

    @property
    def group_local(self) -> bool:
        """Whether a row's advantage depends on its prompt group alone (a streamed step trains part by part)."""
        return not self.whiten


@ADVANTAGES.register("rloo", params=RLOOParams)
@torch.no_grad()
def rloo_advantages(x: AdvantageInputs, p: RLOOParams) -> AdvantageOut:
    """A_{i,t} = R_i − mean_{j∈g, j≠i} R_j on every response token of sample i.

    Args: x.rewards (B,), x.mask (B, T), x.group_index (B,) (required), x.token_rewards (B, T) optional.
    Returns: AdvantageOut(adv (B, T), returns=None).
    Ref: arXiv:2402.14740 §3 (RLOO).
    """
    group_index = require(x, "group_index", "rloo")
    r = sequence_returns(x)  # (B,)
    mean, _, n = group_mean_std(r, group_index)
    # R_i − (n·mean − R_i)/(n − 1) = n/(n − 1)·(R_i − mean); a one-sample group (n = 1) gets 0
    adv = torch.where(n > 1, (r - mean) * n / (n - 1.0).clamp_min(1.0), torch.zeros_like(r))
    if p.whiten:
        adv = masked_whiten(adv, torch.ones_like(adv, dtype=torch.bool), p.eps, unbiased=True)
    return AdvantageOut(broadcast_to_tokens(adv, x.mask))
