"""Soup anchor (SALSA): the KL reference is a weight-space average of N SFT models, then held fixed.

θ_soup = Σ_i w_i·θ_i / Σ_i w_i   (SALSA: θ_soup = α·θ_SFT,a + (1−α)·θ_SFT,b, α = 0.5; the policy starts
from θ_soup too)
Ref: Chegini et al. 2024, "SALSA: Soup-based Alignment Learning for Stronger Adaptation in RLHF",
arXiv:2411.01798; soups: arXiv:2203.05482.
``build_soup`` makes the anchor once at set-up (it is the ``linear`` merge); the registered per-step rule
then keeps it frozen.
Deviations from the paper: none.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass

import torch

from alignrl.anchors.common import AnchorUpdate
from alignrl.merging import merge_state_dicts
from alignrl.merging.linear import LinearParams
from alignrl.registry import ANCHORS


@dataclass(frozen=True, kw_only=True, slots=True)
class SoupParams:
    weights: tuple[float, ...] | None = None
    """w_i, one per ingredient (normalised to sum 1); None = uniform (SALSA's α = 0.5 for two)."""


def build_soup(state_dicts: Sequence[Mapping[str, torch.Tensor]], p: SoupParams) -> dict[str, torch.Tensor]:
    """θ_soup = Σ_i w_i·θ_i / Σ_i w_i, key by key (a new dict in each input's dtype and device).

    Args: state_dicts N ≥ 1 ingredient dicts with identical keys and shapes; p SoupParams.
    Returns: {name: Tensor} soup. Ref: arXiv:2411.01798 (SALSA).
    """
    return merge_state_dicts("linear", state_dicts, None, LinearParams(weights=p.weights, normalize=True))


@ANCHORS.register("soup", params=SoupParams)
def soup(
    anchor: MutableMapping[str, torch.Tensor],
    policy: MutableMapping[str, torch.Tensor],
    step: int,
    p: SoupParams,
    *,
    init: Mapping[str, torch.Tensor] | None = None,
) -> AnchorUpdate:
    """θ_ref ← θ_ref: the soup built by ``build_soup`` stays fixed during training.

    Args: anchor θ_soup {name: Tensor}, untouched; policy, step, p, init unused (uniform signature).
    Returns: AnchorUpdate() (nothing changed).
    Ref: arXiv:2411.01798 (SALSA).
    """
    return AnchorUpdate()
