"""LITI: linear interpolation of a (merged) model towards its initialisation.

θ_η = (1−η)·θ_init + η·θ_merged = θ_init + η·(θ_merged − θ_init)
Sweeping η ∈ [0, 1] traces WARP's KL–reward front; a chosen η gives the next iteration's init.
Ref: Ramé et al. 2024, "WARP", arXiv:2406.16768, stage 3 (LITI); cf. WiSE-FT, arXiv:2109.01903.
Deviations from the paper: none. η outside [0, 1] (extrapolation) is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignrl.merging.common import check_inputs, work_dtype
from alignrl.registry import MERGES


@dataclass(frozen=True, kw_only=True, slots=True)
class LitiParams:
    eta: float
    """η in [0, 1]: 0 returns θ_init, 1 returns θ_merged (WARP's LITI coefficient)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"liti: eta must be in [0, 1], got {self.eta}")


@MERGES.register("liti", params=LitiParams)
def liti(tensors: list[torch.Tensor], base: torch.Tensor | None, p: LitiParams) -> torch.Tensor:
    """θ_η = θ_init + η·(θ_merged − θ_init).

    Args: tensors exactly one tensor θ_merged (e.g. the SLERP output); base θ_init (required);
        p LitiParams. Returns: θ_η in the input dtype and device; exactly θ_init at η = 0 and
        exactly θ_merged at η = 1.
    Ref: arXiv:2406.16768 (WARP, stage 3).
    """
    check_inputs(tensors, base, op="liti", min_models=1, max_models=1, needs_base=True)
    dt = work_dtype(base.dtype)
    # torch.lerp computes end − (end − start)·(1 − w) for w ≥ 0.5, so both ends are exact
    return torch.lerp(base.to(dt), tensors[0].to(dt), p.eta).to(base.dtype)
