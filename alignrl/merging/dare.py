"""DARE: drop a random fraction of each task vector and rescale the rest, then merge.

δ_m = θ_m − θ_base,   δ̃_m = (1 − z_m) ⊙ δ_m / (1 − p),   z_m ~ Bernoulli(p) elementwise  (E[δ̃_m] = δ_m)
variant "linear": θ = θ_base + λ·Σ_m w_m·δ̃_m                       (DARE + task arithmetic)
variant "ties":   θ = θ_base + λ·disjoint_mean_γ(δ̃_m), γ = sgn(Σ_m w_m·δ̃_m)   (DARE + TIES election)
Ref: Yu et al. 2024, "Language Models are Super Mario" (DARE), arXiv:2311.03099.
Deviations from the paper: the "ties" variant replaces TIES' magnitude trim by DARE's drop. mergekit's
dare_* rescale by the L1 norm (δ̃ = m ⊙ δ · ‖δ‖₁/‖m ⊙ δ‖₁) and do not divide by the weights by default:
``rescale="l1"`` and ``normalize=False`` reproduce that (``alignrl merge`` sets them from a mergekit YAML).
Randomness: one ``torch.Generator`` on the tensors' device seeded with ``seed``; model m draws its mask
after models 0..m−1, so a seed fixes every mask. ``merge_state_dicts`` derives a distinct seed per key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from alignrl.merging.common import check_inputs, resolve_weights, task_vectors
from alignrl.merging.task_arithmetic import weighted_sum
from alignrl.merging.ties import elect_and_disjoint_mean, per_model
from alignrl.registry import MERGES


@dataclass(frozen=True, kw_only=True, slots=True)
class DareParams:
    drop: float | tuple[float, ...] = 0.9
    """p, the probability of dropping each task-vector coordinate, in [0, 1); one for all models or one per
    model in input order."""
    seed: int = 0
    """Seed of the drop masks (same seed, same inputs: same result)."""
    variant: Literal["linear", "ties"] = "linear"
    """What merges the rescaled task vectors: a weighted sum, or TIES sign election + disjoint mean."""
    weights: tuple[float, ...] | None = None
    """w_m, one per model in input order; None = 1.0 each."""
    lam: float = 1.0
    """λ, the scale of the merged task vector."""
    rescale: Literal["inverse_keep", "l1", "none"] = "inverse_keep"
    """inverse_keep: δ̃ = m ⊙ δ/(1 − p) (the paper); l1: m ⊙ δ·‖δ‖₁/‖m ⊙ δ‖₁ (mergekit); none: m ⊙ δ."""
    normalize: bool | None = None
    """Divide by the weights: None = the variant's own rule (linear: no, ties: the disjoint mean); True/False
    force it (linear: Σ_m w_m·δ̃_m / Σ_m w_m; ties: with or without the disjoint mean's division)."""

    def __post_init__(self) -> None:
        for d in (self.drop if isinstance(self.drop, tuple) else (self.drop,)):
            if not 0.0 <= d < 1.0:
                raise ValueError(f"dare: drop must be in [0, 1), got {d}")
        if self.rescale not in ("inverse_keep", "l1", "none"):
            raise ValueError(f"dare: rescale must be inverse_keep, l1 or none, got {self.rescale!r}")
        if self.variant not in ("linear", "ties"):
            raise ValueError(f"dare: variant must be 'linear' or 'ties', got {self.variant!r}")


def drop_and_rescale(deltas: torch.Tensor, drop: float | list[float], generator: torch.Generator,
                     rescale: str = "inverse_keep") -> torch.Tensor:
    """δ̃_m = 1[u ≥ p_m] ⊙ δ_m · s_m, u ~ U[0, 1) from ``generator`` (one draw per element, in order);
    s_m = 1/(1 − p_m) (inverse_keep), ‖δ_m‖₁/‖1[u ≥ p_m] ⊙ δ_m‖₁ (l1; 1 when either norm is below 1e-7, as
    mergekit) or 1 (none).

    Args: deltas (M, *shape) in the work dtype; drop p in [0, 1), one or one per model. Returns (M, *shape).
    """
    u = torch.rand(deltas.shape, generator=generator, device=deltas.device, dtype=deltas.dtype)
    p = torch.tensor(drop if isinstance(drop, list) else [drop] * deltas.shape[0], dtype=deltas.dtype,
                     device=deltas.device).reshape(-1, *([1] * (deltas.dim() - 1)))
    kept = deltas * (u >= p)
    if rescale == "inverse_keep":
        return kept / (1.0 - p)
    if rescale == "l1":
        before = deltas.abs().flatten(1).sum(1)
        after = kept.abs().flatten(1).sum(1)
        ok = (before >= 1e-7) & (after >= 1e-7)
        scale = torch.where(ok, before / torch.where(ok, after, torch.ones_like(after)), torch.ones_like(after))
        return kept * scale.reshape(-1, *([1] * (deltas.dim() - 1)))
    return kept


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
    drops = per_model(p.drop, len(tensors), op="dare", name="drop")
    kept = drop_and_rescale(deltas, drops if isinstance(p.drop, tuple) else p.drop, generator, p.rescale)
    if p.variant == "linear":
        merged = weighted_sum(kept, w)
        if p.normalize:
            total = sum(w)
            merged = merged / (total if abs(total) >= 1e-8 else 1.0)
    else:
        merged = elect_and_disjoint_mean(kept, w, p.normalize is not False)
    return (base.to(deltas.dtype) + p.lam * merged).to(base.dtype)
