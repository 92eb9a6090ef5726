"""TIES-Merging: trim, elect sign, disjoint mean.

δ_m = θ_m − θ_base
1. trim:  δ̂_m = δ_m on the top-k coordinates of |δ_m| (k = ⌊density·n⌋, at least 1), 0 elsewhere
2. elect: γ = sgn(Σ_m w_m·δ̂_m) per coordinate (the sign with the larger total mass)
3. disjoint mean over A = {m : sgn(w_m·δ̂_m) = γ ≠ 0}:  τ = Σ_{m∈A} w_m·δ̂_m / Σ_{m∈A} w_m  (0 if A = ∅)
θ = θ_base + λ·τ
Ref: Yadav et al. 2023, "TIES-Merging: Resolving Interference When Merging Models", arXiv:2306.01708,
Algorithm 1 (w_m = 1 there).
Deviations from the paper: per-model weights w_m (as mergekit); a coordinate whose elected mass is
exactly 0 keeps the base value (the reference code gives it the tensor's majority sign, mergekit gives
it +); equal magnitudes at the trim boundary are kept in ``torch.topk`` order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignrl.merging.common import check_inputs, resolve_weights, task_vectors
from alignrl.registry import MERGES


@dataclass(frozen=True, kw_only=True, slots=True)
class TiesParams:
    density: float | tuple[float, ...] = 0.2
    """Fraction of each task vector's coordinates kept by magnitude (the paper's k = 20%); one value for all
    models or one per model in input order (mergekit's per-model density)."""
    weights: tuple[float, ...] | None = None
    """w_m, one per model in input order; None = 1.0 each (the paper)."""
    lam: float = 1.0
    """λ, the scale of the merged task vector."""
    normalize: bool = True
    """True: the disjoint mean (the paper; mergekit normalize: true); False: the agreeing models' weighted sum
    Σ_{m∈A} w_m·δ̂_m, not divided by Σ_{m∈A} w_m (mergekit normalize: false)."""

    def __post_init__(self) -> None:
        for d in (self.density if isinstance(self.density, tuple) else (self.density,)):
            if not 0.0 <= d <= 1.0:
                raise ValueError(f"ties: density must be in [0, 1], got {d}")


def per_model(value: float | tuple[float, ...], n: int, *, op: str, name: str) -> list[float]:
    """A scalar knob repeated n times, or a per-model tuple checked to have n entries."""
    if isinstance(value, tuple):
        if len(value) != n:
            raise ValueError(f"{op}: {len(value)} {name} values for {n} models")
        return [float(v) for v in value]
    return [float(value)] * n


def trim_by_magnitude(delta: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the k = ⌊density·n⌋ (≥ 1 if density > 0) largest-|δ| entries, zero the rest. Shape kept."""
    if density >= 1.0:
        return delta
    n = delta.numel()
    k = max(1, int(density * n)) if density > 0.0 else 0
    if k == 0 or n == 0:
        return torch.zeros_like(delta)
    keep = torch.zeros(n, dtype=torch.bool, device=delta.device)
    keep[delta.abs().flatten().topk(k).indices] = True
    return delta * keep.reshape(delta.shape)


def elect_and_disjoint_mean(deltas: torch.Tensor, weights: list[float], normalize: bool = True) -> torch.Tensor:
    """τ = Σ_{m∈A} w_m·δ_m / Σ_{m∈A} w_m with A = {m : sgn(w_m·δ_m) = sgn(Σ_j w_j·δ_j) ≠ 0}
    (without the division when ``normalize`` is False).

    Args: deltas (M, *shape) trimmed task vectors; weights M floats. Returns (*shape).
    """
    w = torch.tensor(weights, dtype=deltas.dtype, device=deltas.device).reshape(-1, *([1] * (deltas.dim() - 1)))
    x = w * deltas  # (M, *shape)
    gamma = torch.sign(x.sum(dim=0))  # elected sign; 0 where the masses cancel exactly
    agree = (torch.sign(x) == gamma) & (gamma != 0)  # (M, *shape)
    num = (x * agree).sum(dim=0)
    if not normalize:
        return num
    den = (w * agree).sum(dim=0)
    return torch.where(den != 0, num / torch.where(den != 0, den, torch.ones_like(den)), torch.zeros_like(num))


@MERGES.register("ties", params=TiesParams)
def ties(tensors: list[torch.Tensor], base: torch.Tensor | None, p: TiesParams) -> torch.Tensor:
    """θ = θ_base + λ·disjoint_mean_γ(trim_k(θ_m − θ_base)),  γ = sgn(Σ_m w_m·δ̂_m).

    Args: tensors M ≥ 1 fine-tuned tensors; base θ_base (required), same shape, dtype, device;
        p TiesParams. Returns: the merged tensor in the input dtype and device.
    Ref: arXiv:2306.01708, Algorithm 1.
    """
    check_inputs(tensors, base, op="ties", needs_base=True)
    w = resolve_weights(p.weights, len(tensors), op="ties")
    densities = per_model(p.density, len(tensors), op="ties", name="density")
    deltas = task_vectors(tensors, base)  # (M, *shape)
    trimmed = torch.stack([trim_by_magnitude(d, k) for d, k in zip(deltas, densities)])
    return (base.to(deltas.dtype) + p.lam * elect_and_disjoint_mean(trimmed, w, p.normalize)).to(base.dtype)
