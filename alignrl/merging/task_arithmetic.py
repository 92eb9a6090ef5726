"""Task arithmetic: add a scaled sum of task vectors to the base.

δ_m = θ_m − θ_base,   θ = θ_base + λ·Σ_m w_m·δ_m
Ref: Ilharco et al. 2023, "Editing Models with Task Arithmetic", arXiv:2212.04089 (task addition).
Deviations from the paper: per-model weights w_m (mergekit's "weight"); the paper uses one λ.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignrl.merging.common import check_inputs, resolve_weights, task_vectors
from alignrl.registry import MERGES


@dataclass(frozen=True, kw_only=True, slots=True)
class TaskArithmeticParams:
    weights: tuple[float, ...] | None = None
    """w_m, one per model in input order; None = 1.0 each."""
    lam: float = 1.0
    """λ, the scale of the summed task vector (mergekit's "lambda")."""


def weighted_sum(deltas: torch.Tensor, weights: list[float]) -> torch.Tensor:
    """Σ_m w_m·δ_m over the leading axis. deltas (M, *shape) -> (*shape)."""
    w = torch.tensor(weights, dtype=deltas.dtype, device=deltas.device).reshape(-1, *([1] * (deltas.dim() - 1)))
    return (w * deltas).sum(dim=0)


@MERGES.register("task_arithmetic", params=TaskArithmeticParams)
def task_arithmetic(tensors: list[torch.Tensor], base: torch.Tensor | None, p: TaskArithmeticParams) -> torch.Tensor:
    """θ = θ_base + λ·Σ_m w_m·(θ_m − θ_base).

    Args: tensors M ≥ 1 fine-tuned tensors θ_m; base θ_base (required), same shape, dtype, device;
        p TaskArithmeticParams. Returns: the merged tensor in the input dtype and device.
    Ref: arXiv:2212.04089.
    """
    check_inputs(tensors, base, op="task_arithmetic", needs_base=True)
    w = resolve_weights(p.weights, len(tensors), op="task_arithmetic")
    deltas = task_vectors(tensors, base)  # (M, *shape)
    return (base.to(deltas.dtype) + p.lam * weighted_sum(deltas, w)).to(base.dtype)
