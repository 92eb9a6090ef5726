"""DARE: drop a random fraction of each task vector and rescale the rest, then merge.

δ_m = θ_m − θ_base,   δ̃_m = (1 − z_m) ⊙ δ_m / (1 − p),   z_m ~ Bernoulli(p) elementwise  (E[δ̃_m] = δ_m)
variant "linear": θ = θ_base + λ·Σ_m w_m·δ̃_m                       (DARE + task arithmetic)
variant "ties":   θ = θ_base + λ·disjoint_mean_γ(δ̃_m), γ = sgn(Σ_m w_m·δ̃_m)   (DARE + TIES election)
Ref: Yu et al. 2024, "Language Models are Super Mario" (DARE), arXiv:2311.03099.
Deviations from the paper: the "ties" variant replaces TIES' magnitude trim by DARE's drop (mergekit's
dare_ties does the same but sums instead of averaging and rescales by the L1 norm, not 1/(1 − p)).
Randomness: one ``torch.Generator`` on the tensors' device seeded with ``seed``; model m draws its mask
after models 0..m−1, so a seed fixes every mask. ``merge_state_dicts`` derives a distinct seed per key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from alignrl.merging.common import check_inputs, resolve_weights, task_vectors
from alignrl.merging.task_arithmetic import weighted_sum
from alignrl.merging.ties import elect_and_disjoint_mean
from alignrl.registry import MERGES


@dataclass(frozen=True, kw_only=True, slots=True)
class DareParams:
    drop: float = 0.9
    """p, the probability of dropping each task-vector coordinate, in [0, 1)."""
    seed: int = 0
    """Seed of the drop masks (same seed, same inputs: same result)."""
    variant: Literal["linear", "ties"] = "linear"
    """What merges the rescaled task vectors: a weighted sum, or TIES sign election + disjoint mean."""
    weights: tuple[float, ...] | None = None
    """w_m, one per model in input order; None = 1.0 each."""
    lam: float = 1.0
    """λ, the scale of the merged task vector."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.drop < 1.0:
            raise ValueError(f"dare: drop must be in [0, 1), got {self.drop}")
        if self.variant not in ("linear", "ties"):
            raise ValueError(f"dare: variant must be 'linear' or 'ties', got {self.variant!r}")


def drop_and_rescale(deltas: torch.Tensor, drop: float, generator: torch.Generator) -> torch.Tensor:
    """δ̃ = 1[u ≥ p] ⊙ δ / (1 − p), u ~ U[0, 1) from ``generator`` (one draw per element, in order).

    Args: deltas (M, *shape) in the work dtype; drop p in [0, 1). Returns (M, *shape).
    """
    u = torch.rand(deltas.shape, generator=generator, device=deltas.device, dtype=deltas.dtype)
    return deltas * (u >= drop) / (1.0 - drop)


@MERGES.register("dare", params=DareParams)
def dare(tensors: list[torch.Tensor], base: torch.Tensor | None, p: DareParams) -> torch.Tensor:
    """θ = θ_base + λ·merge_m(m_m ⊙ δ_m / (1 − p)),  m_m ~ Bernoulli(1 − p), merge = Σ w_m· or TIES mean.

    Args: tensors M ≥ 1 fine-tuned tensors; base θ_base (required), same shape, dtype, device;
        p DareParams. Returns: the merged tensor in the input dtype and device. With drop = 0 and
        variant "linear" this is task arithmetic exactly.
    Ref: arXiv:2311.03099.
    """
    check_inputs(tensors, base, op="dare", needs_base=True)
    w = resolve_weights(p.weights, len(tensors), op="dare")
    deltas = task_vectors(tensors, base)  # (M, *shape)
    generator = torch.Generator(device=deltas.device).manual_seed(p.seed)
    kept = drop_and_rescale(deltas, p.drop, generator)
    merged = weighted_sum(kept, w) if p.variant == "linear" else elect_and_disjoint_mean(kept, w)
    return (base.to(deltas.dtype) + p.lam * merged).to(base.dtype)
