"""EMA anchor: the reference is an exponential moving average of the policy (WARP stage 1).

θ_ema ← β·θ_ema + (1−β)·θ          after every optimizer step  (β = decay; METHODS' rate μ = 1 − β)
Bias-corrected (zero-initialised, Adam-style) form, kept in place through a step-dependent rate:
    μ_t = (1−β) / (1 − β^t),   θ_ema ← (1−μ_t)·θ_ema + μ_t·θ     (μ_1 = 1: after step 1 θ_ema = θ)
which equals m_t / (1 − β^t) for m_t = β·m_{t−1} + (1−β)·θ_t, m_0 = 0.
WARP: the EMA starts at θ_init, β = 1 − μ with μ ≈ 0.01 (verify), no bias correction; the KL term of
the RL loss is taken against π_ema.
Ref: Ramé et al. 2024, "WARP", arXiv:2406.16768, stage 1; bias correction as in Adam, arXiv:1412.6980.
Deviations from the paper: none. dtype: the update is computed in float32 and written back in the
anchor's dtype; a bf16 anchor loses increments below its rounding step (keep it fp32 for β ≥ ~0.99).
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass

import torch

from alignrl.anchors.common import AnchorUpdate, lerp_state_dict_
from alignrl.registry import ANCHORS


@dataclass(frozen=True, kw_only=True, slots=True)
class EMAParams:
    decay: float = 0.99
    """β in [0, 1]: 0 copies the policy every step, 1 never moves (WARP: 1 − μ)."""
    bias_correction: bool = False
    """Use μ_t = (1−β)/(1−β^t): the debiased zero-initialised EMA (the anchor's initial value is ignored)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.decay <= 1.0:
            raise ValueError(f"ema: decay must be in [0, 1], got {self.decay}")


def ema_rate(step: int, p: EMAParams) -> float:
    """μ_t: 1 − β, or (1 − β)/(1 − β^t) with bias correction (t ≥ 1; 0 when β = 1)."""
    if not p.bias_correction:
        return 1.0 - p.decay
    if step < 1:
        raise ValueError(f"ema: bias correction needs step ≥ 1, got {step}")
    if p.decay == 1.0:
        return 0.0
    return (1.0 - p.decay) / (1.0 - p.decay**step)


@ANCHORS.register("ema", params=EMAParams)
def ema(
    anchor: MutableMapping[str, torch.Tensor],
    policy: MutableMapping[str, torch.Tensor],
    step: int,
    p: EMAParams,
    *,
    init: Mapping[str, torch.Tensor] | None = None,
) -> AnchorUpdate:
    """θ_ema ← (1−μ_t)·θ_ema + μ_t·θ in place, μ_t = 1 − β (or (1−β)/(1−β^t) bias-corrected).

    Args: anchor θ_ema {name: Tensor}, updated in place (any floating dtype); policy θ {name: Tensor},
        same keys and shapes, read only; step t ≥ 1, the number of optimizer steps taken; p EMAParams;
        init unused. Returns: AnchorUpdate(anchor=True) unless μ_t = 0.
    Ref: arXiv:2406.16768 (WARP, stage 1).
    """
    rate = ema_rate(step, p)
    lerp_state_dict_(anchor, policy, rate)
    return AnchorUpdate(anchor=rate > 0.0)
