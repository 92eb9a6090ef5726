"""SLERP: spherical linear interpolation of two task vectors (or two weight tensors), per tensor.

With a base: δ_m = θ_m − θ_base,  Ω = arccos(⟨δ_1, δ_2⟩ / (‖δ_1‖·‖δ_2‖)),
    θ = θ_base + sin((1−t)·Ω)/sin Ω · δ_1 + sin(t·Ω)/sin Ω · δ_2
Without a base the same formula acts on θ_1, θ_2 directly (mergekit's "slerp" between two models).
When |cos Ω| > dot_threshold (nearly parallel or antiparallel: sin Ω ≈ 0) or a vector has norm ≤ eps,
the coefficients fall back to LERP: (1−t), t.  t = 0 and t = 1 return the end tensors exactly.
Ref: Shoemake 1985 (SLERP); Ramé et al. 2024, "WARP", arXiv:2406.16768, stage 2 (SLERP of task vectors).
Deviations from the paper: only two models (WARP's M > 2 case is left to the caller); mergekit treats a
zero-norm input as orthogonal (cos = 0) while this falls back to LERP.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from alignrl.merging.common import check_inputs, work_dtype
from alignrl.registry import MERGES


@dataclass(frozen=True, kw_only=True, slots=True)
class SlerpParams:
    t: float = 0.5
    """Interpolation position in [0, 1]: 0 gives model 0, 1 gives model 1 (WARP's λ)."""
    dot_threshold: float = 0.9995  # |cos Ω| above this: sin Ω is too small to divide by, use LERP
    """LERP fallback when the vectors are this close to (anti)parallel (mergekit's default)."""
    eps: float = 1e-8  # a vector this short has no direction to rotate
    """LERP fallback when either vector's L2 norm is at most eps."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.t <= 1.0:
            raise ValueError(f"slerp: t must be in [0, 1], got {self.t}")
        if not 0.0 < self.dot_threshold <= 1.0:
            raise ValueError(f"slerp: dot_threshold must be in (0, 1], got {self.dot_threshold}")


def slerp_coefficients(v0: torch.Tensor, v1: torch.Tensor, p: SlerpParams) -> tuple[torch.Tensor, torch.Tensor]:
    """(c_0, c_1) with SLERP = c_0·v_0 + c_1·v_1: sin((1−t)Ω)/sin Ω and sin(tΩ)/sin Ω, or (1−t, t).

    Args: v0, v1 same-shape tensors in the work dtype. Returns: two 0-dim tensors (no host sync).
    """
    n0, n1 = torch.linalg.vector_norm(v0), torch.linalg.vector_norm(v1)
    # normalise before the dot product so it cannot overflow; the clamp only matters on the LERP branch
    cos = torch.dot((v0 / n0.clamp_min(p.eps)).flatten(), (v1 / n1.clamp_min(p.eps)).flatten()).clamp(-1.0, 1.0)
    use_lerp = (n0 <= p.eps) | (n1 <= p.eps) | (cos.abs() > p.dot_threshold)
    # keep sin Ω = 1 on the LERP branch so the unused quotient is finite (torch.where evaluates both)
    omega = torch.where(use_lerp, torch.full_like(cos, math.pi / 2), torch.acos(cos))
    sin_omega = torch.sin(omega)
    c0 = torch.where(use_lerp, torch.full_like(cos, 1.0 - p.t), torch.sin((1.0 - p.t) * omega) / sin_omega)
    c1 = torch.where(use_lerp, torch.full_like(cos, p.t), torch.sin(p.t * omega) / sin_omega)
    return c0, c1


@MERGES.register("slerp", params=SlerpParams)
def slerp(tensors: list[torch.Tensor], base: torch.Tensor | None, p: SlerpParams) -> torch.Tensor:
    """θ = θ_base + sin((1−t)Ω)/sin Ω·δ_1 + sin(tΩ)/sin Ω·δ_2,  cos Ω = ⟨δ_1,δ_2⟩/(‖δ_1‖‖δ_2‖).

    Args: tensors exactly two tensors θ_1, θ_2 of one shape, dtype and device; base θ_base (δ_m = θ_m −
        θ_base) or None (interpolate θ_1, θ_2 themselves); p SlerpParams.
    Returns: the merged tensor in the input dtype and device; θ_1 at t = 0 and θ_2 at t = 1, exactly.
    Ref: arXiv:2406.16768 (WARP, stage 2).
    """
    check_inputs(tensors, base, op="slerp", min_models=2, max_models=2)
    if p.t == 0.0:
        return tensors[0].clone()
    if p.t == 1.0:
        return tensors[1].clone()
    dt = work_dtype(tensors[0].dtype)
    origin = base.to(dt) if base is not None else None
    v0, v1 = tensors[0].to(dt), tensors[1].to(dt)
    if origin is not None:
        v0, v1 = v0 - origin, v1 - origin
    c0, c1 = slerp_coefficients(v0, v1, p)
    out = c0 * v0 + c1 * v1
    if origin is not None:
        out = out + origin
    return out.to(tensors[0].dtype)
