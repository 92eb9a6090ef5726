"""Model Stock: interpolate the average of N fine-tuned models towards the base by an angle-based ratio.

δ_m = θ_m − θ_0,   cos θ = mean_{i<j} ⟨δ_i, δ_j⟩ / (‖δ_i‖·‖δ_j‖)   (per tensor, or per row: filter_wise)
t = N·cos θ / (1 + (N−1)·cos θ),   θ_H = t·θ_avg + (1−t)·θ_0 = θ_0 + t·(1/N)·Σ_m δ_m
Ref: Jang, Yun & Han 2024, "Model Stock: All we need is just a few fine-tuned models",
arXiv:2403.19522, §3 (the interpolation ratio; equation number to verify).
Deviations from the paper: the paper assumes one angle between all pairs; with N > 2 this averages the
pairwise cosines (as mergekit). Where 1 + (N−1)·cos θ is within eps of 0 the base is kept (t = 0), and a
zero task vector counts as orthogonal (cos = 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignrl.merging.common import check_inputs, task_vectors
from alignrl.registry import MERGES


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelStockParams:
    filter_wise: bool = False
    """One ratio per row (dim 0) instead of one per tensor; 1-D tensors are a single row either way."""
    eps: float = 1e-8  # norms and the ratio's denominator below this are treated as 0
    """Guard for zero-length task vectors and the singular ratio."""


def model_stock_ratio(deltas: torch.Tensor, eps: float) -> torch.Tensor:
    """t = N·cos θ / (1 + (N−1)·cos θ) with cos θ the mean pairwise cosine over the last axis.

    Args: deltas (N, R, D) task vectors as R rows of length D. Returns: t (R,).
    """
    n = deltas.shape[0]
    unit = deltas / torch.linalg.vector_norm(deltas, dim=-1, keepdim=True).clamp_min(eps)  # (N, R, D)
    pairs = [(unit[i] * unit[j]).sum(dim=-1) for i in range(n) for j in range(i + 1, n)]  # each (R,)
    cos = torch.stack(pairs).mean(dim=0).clamp(-1.0, 1.0)
    den = 1.0 + (n - 1) * cos
    singular = den.abs() <= eps
    return torch.where(singular, torch.zeros_like(cos), n * cos / torch.where(singular, torch.ones_like(den), den))


@MERGES.register("model_stock", params=ModelStockParams)
def model_stock(tensors: list[torch.Tensor], base: torch.Tensor | None, p: ModelStockParams) -> torch.Tensor:
    """θ_H = θ_0 + t·(1/N)·Σ_m δ_m,  t = N·cos θ / (1 + (N−1)·cos θ).

    Args: tensors N ≥ 2 fine-tuned tensors; base θ_0 (required), same shape, dtype, device;
        p ModelStockParams. Returns: the merged tensor in the input dtype and device.
    Ref: arXiv:2403.19522, §3.
    """
    check_inputs(tensors, base, op="model_stock", min_models=2, needs_base=True)
    deltas = task_vectors(tensors, base)  # (N, *shape)
    rows = base.shape[0] if p.filter_wise and base.dim() >= 2 else 1
    t = model_stock_ratio(deltas.reshape(len(tensors), rows, -1), p.eps)  # (R,)
    mean_delta = deltas.mean(dim=0).reshape(rows, -1)
    return (base.to(deltas.dtype) + (t[:, None] * mean_delta).reshape(base.shape)).to(base.dtype)
