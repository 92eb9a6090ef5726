"""Elastic Reset: keep an EMA of the policy; every n steps reset the policy to the EMA and the EMA to init.

every step:        θ_ema ← β·θ_ema + (1−β)·θ
every n-th step:   θ ← θ_ema,  then  θ_ema ← θ_0
Ref: Noukhovitch et al. 2023, "Language Model Alignment with Elastic Reset", arXiv:2312.07551.
Here ``anchor`` is the EMA model the policy is reset to, not the KL reference: the paper's KL penalty
(optional) stays against π_0, i.e. pair this rule with a frozen KL anchor.
Deviations from the paper: the optimizer state is not touched (the returned AnchorUpdate(policy=True)
tells the loop to reset or keep it).
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass

import torch

from alignrl.anchors.common import AnchorUpdate, copy_state_dict_, lerp_state_dict_
from alignrl.registry import ANCHORS


@dataclass(frozen=True, kw_only=True, slots=True)
class ElasticResetParams:
    period: int
    """n, the number of optimizer steps between resets."""
    decay: float = 0.99
    """β of the EMA kept between resets (rate μ = 1 − β)."""

    def __post_init__(self) -> None:
        if self.period < 1:
            raise ValueError(f"elastic_reset: period must be ≥ 1, got {self.period}")
        if not 0.0 <= self.decay <= 1.0:
            raise ValueError(f"elastic_reset: decay must be in [0, 1], got {self.decay}")


def reset_(
    policy: MutableMapping[str, torch.Tensor],
    ema: MutableMapping[str, torch.Tensor],
    init: Mapping[str, torch.Tensor],
) -> None:
    """The reset event, in place: θ ← θ_ema, then θ_ema ← θ_0."""
    copy_state_dict_(policy, ema)
    copy_state_dict_(ema, init)


@ANCHORS.register("elastic_reset", params=ElasticResetParams)
def elastic_reset(
    anchor: MutableMapping[str, torch.Tensor],
    policy: MutableMapping[str, torch.Tensor],
    step: int,
    p: ElasticResetParams,
    *,
    init: Mapping[str, torch.Tensor] | None = None,
) -> AnchorUpdate:
    """θ_ema ← β·θ_ema + (1−β)·θ;  if t mod n = 0:  θ ← θ_ema, θ_ema ← θ_0.  All in place.

    Args: anchor θ_ema {name: Tensor} (start it at θ_0); policy θ, reset in place at multiples of n;
        step t ≥ 1, optimizer steps taken; p ElasticResetParams; init θ_0 (required).
    Returns: AnchorUpdate(anchor=True, policy=True) on a reset step, else AnchorUpdate(anchor=β < 1).
    Ref: arXiv:2312.07551.
    """
    if init is None:
        raise ValueError("elastic_reset: needs init (θ_0) to reset the EMA to")
    lerp_state_dict_(anchor, policy, 1.0 - p.decay)
    if step % p.period == 0:
        reset_(policy, anchor, init)
        return AnchorUpdate(anchor=True, policy=True)
    return AnchorUpdate(anchor=p.decay < 1.0)
