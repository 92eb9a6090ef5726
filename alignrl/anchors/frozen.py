"""Frozen anchor: the reference model never changes (π_ref = π_0, standard KL-regularised RLHF).

θ_ref,t = θ_ref,0 for all t
Ref: Ouyang et al. 2022, "Training language models to follow instructions with human feedback",
arXiv:2203.02155 (KL to the frozen SFT policy).
Deviations from the paper: none.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass

import torch

from alignrl.anchors.common import AnchorUpdate
from alignrl.registry import ANCHORS


@dataclass(frozen=True, kw_only=True, slots=True)
class FrozenParams:
    """No knobs: the anchor keeps the weights it was loaded with."""


@ANCHORS.register("frozen", params=FrozenParams)
def frozen(
    anchor: MutableMapping[str, torch.Tensor],
    policy: MutableMapping[str, torch.Tensor],
    step: int,
    p: FrozenParams,
    *,
    init: Mapping[str, torch.Tensor] | None = None,
) -> AnchorUpdate:
    """θ_ref ← θ_ref (no-op).

    Args: anchor, policy {name: Tensor}, untouched; step, p, init unused (uniform anchor signature).
    Returns: AnchorUpdate() (nothing changed).
    Ref: arXiv:2203.02155.
    """
    return AnchorUpdate()
