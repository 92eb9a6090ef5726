"""In-place state-dict updates shared by the anchor rules (pure set).

``lerp_state_dict_`` is the one weight-space primitive behind EMA, TR-DPO soft sync and Elastic Reset:
target ← target + w·(source − target), tensor by tensor, in place (``copy_``/``lerp_`` into the existing
storage, so a caller's parameter objects and ZeRO shards stay the same objects).
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass

import torch

from alignrl.merging.common import check_state_dicts


@dataclass(frozen=True, kw_only=True, slots=True)
class AnchorUpdate:
    """What an anchor rule changed this step, so the loop knows what to push or reset."""

    anchor: bool = False
    """The anchor dict changed: refresh the workers that serve anchor log-probs."""
    policy: bool = False
    """The policy dict changed (a reset): push weights to the generators; the optimizer state is stale."""


@torch.no_grad()
def lerp_state_dict_(
    target: MutableMapping[str, torch.Tensor], source: Mapping[str, torch.Tensor], weight: float
) -> None:
    """target[k] ← target[k] + w·(source[k] − target[k]) in place, for every key.

    Floating tensors are combined in float32 (float64 if the target is float64) and written back in the
    target's dtype: w = 0 keeps the target and w = 1 copies the source exactly (``torch.lerp`` is exact
    at both ends). A bf16/fp16 target is rounded after every update, so an increment w·(source − target)
    below half its ulp is lost: keep an EMA target in fp32 when 1 − decay is small (the source may stay
    bf16). Non-floating tensors (integer buffers) are copied from the source when w > 0.
    Args: target, source dicts with the same keys and per-key shapes; weight w in [0, 1].
    """
    check_state_dicts([target, source], ["target", "source"])
    for k, t in target.items():
        s = source[k]
        if not t.is_floating_point():
            if weight > 0.0:
                t.copy_(s)
        elif t.dtype in (torch.float32, torch.float64):
            t.lerp_(s.to(device=t.device, dtype=t.dtype), weight)
        else:
            t.copy_(t.float().lerp_(s.to(device=t.device, dtype=torch.float32), weight))


@torch.no_grad()
def copy_state_dict_(target: MutableMapping[str, torch.Tensor], source: Mapping[str, torch.Tensor]) -> None:
    """target[k] ← source[k] in place (cast to the target's dtype and device) for every key."""
    check_state_dicts([target, source], ["target", "source"])
    for k, t in target.items():
        t.copy_(source[k])
