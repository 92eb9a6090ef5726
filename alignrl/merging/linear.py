"""Linear merge (model soup): a weighted average of M models' weights, tensor by tensor.

θ = Σ_m w_m·θ_m / Σ_m w_m   (normalize=True, the soup)     θ = Σ_m w_m·θ_m   (normalize=False)
Ref: Wortsman et al. 2022, "Model soups", arXiv:2203.05482 (uniform soup); mergekit "linear".
Deviations from the paper: none (the greedy soup's validation-driven selection is a loop concern).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignrl.merging.common import check_inputs, resolve_weights, work_dtype
from alignrl.registry import MERGES


@dataclass(frozen=True, kw_only=True, slots=True)
class LinearParams:
    weights: tuple[float, ...] | None = None
    """w_m, one per model in input order; None = 1.0 each (a uniform soup when normalize=True)."""
    normalize: bool = True
    """Divide by Σ_m w_m so the weights sum to 1."""


@MERGES.register("linear", params=LinearParams)
def linear(tensors: list[torch.Tensor], base: torch.Tensor | None, p: LinearParams) -> torch.Tensor:
    """θ = Σ_m w_m·θ_m / Σ_m w_m (or without the division when ``normalize=False``).

    Args: tensors M ≥ 1 tensors of one shape, dtype and device; base ignored (a soup has no base);
        p LinearParams. Returns: the merged tensor, same shape, dtype and device as the inputs.
    Ref: arXiv:2203.05482 (model soups).
    """
    check_inputs(tensors, None, op="linear")
    w = resolve_weights(p.weights, len(tensors), op="linear")
    if p.normalize:
        total = sum(w)
        if total == 0.0:
            raise ValueError("linear: weights sum to 0, cannot normalize")
        w = [wi / total for wi in w]
    dt = work_dtype(tensors[0].dtype)
    out = torch.zeros_like(tensors[0], dtype=dt)
    for wi, t in zip(w, tensors):
        out.add_(t.to(dt), alpha=wi)
    return out.to(tensors[0].dtype)
