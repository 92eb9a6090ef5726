"""TR-DPO reference updates: move the reference towards the policy every τ steps.

every τ-th step:   θ_ref ← α·θ + (1−α)·θ_ref
α < 1 is the paper's soft update, α = 1 its hard update (θ_ref ← θ); τ = 1 updates every step.
With α = 1 and τ = the iteration length this is also the "previous iterate" reference (DNO, INPO).
Ref: Gorbatovski et al. 2024, "Learn Your Reference Model for Real Good Alignment" (TR-DPO),
arXiv:2404.09656. Defaults follow TRL's SyncRefModelCallback (α = 0.6, τ = 512).
Deviations from the paper: one rule with both knobs (as TRL) instead of two separate update modes.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass

import torch

from alignrl.anchors.common import AnchorUpdate, lerp_state_dict_
from alignrl.registry import ANCHORS


@dataclass(frozen=True, kw_only=True, slots=True)
class TRDPOParams:
    alpha: float = 0.6
    """α in [0, 1], the policy's share after a sync; 1 = hard update (copy)."""
    sync_steps: int = 512
    """τ ≥ 1, optimizer steps between syncs."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"tr_dpo: alpha must be in [0, 1], got {self.alpha}")
        if self.sync_steps < 1:
            raise ValueError(f"tr_dpo: sync_steps must be ≥ 1, got {self.sync_steps}")


@ANCHORS.register("tr_dpo", params=TRDPOParams)
def tr_dpo(
    anchor: MutableMapping[str, torch.Tensor],
    policy: MutableMapping[str, torch.Tensor],
    step: int,
    p: TRDPOParams,
    *,
    init: Mapping[str, torch.Tensor] | None = None,
) -> AnchorUpdate:
    """If t mod τ = 0:  θ_ref ← α·θ + (1−α)·θ_ref  (in place); otherwise nothing.

    Args: anchor θ_ref {name: Tensor}, updated in place; policy θ, read only; step t ≥ 1, optimizer
        steps taken; p TRDPOParams; init unused. Returns: AnchorUpdate(anchor=True) on a sync step.
    Ref: arXiv:2404.09656 (soft and hard updates).
    """
    if step % p.sync_steps != 0:
        return AnchorUpdate()
    lerp_state_dict_(anchor, policy, p.alpha)
    return AnchorUpdate(anchor=p.alpha > 0.0)
