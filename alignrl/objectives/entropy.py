"""Entropy of the policy's next-token distribution, and the entropy bonus (helpers, not registered).

    H_t = −Σ_v π(v∣s_t)·log π(v∣s_t),  log π = log_softmax(z_t)        (computed in float32 or wider)
    L_H = −c_H · aggregate(H, mask, loss_agg)                              (add to the loss: maximises H)

Logits are processed in blocks of at most ``chunk_size`` positions over B·T by the divergences' chunked
driver (divergences/base.py: forward under no_grad, backward recomputes each block into one gradient
buffer), so only one block of float32 softmax intermediates is alive at a time instead of a (B, T, V) one. Divide the logits by the sampling
temperature before calling, if one was used.
Ref: PPO arXiv:1707.06347 eq. 9 (entropy bonus c₂·S[π_θ](s_t)); Williams & Peng 1991 (entropy
regularisation).
Deviations from the paper: none.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignrl.divergences.base import chunked_rowwise
from alignrl.ops import AGGREGATION_MODES, aggregate, masked_mean, upcast
from alignrl.ops.reductions import AggregationMode
from alignrl.types import LossOut


@dataclass(frozen=True, kw_only=True, slots=True)
class EntropyParams:
    coef: float = 0.0
    """c_H: weight of the bonus; the returned loss is −c_H·H."""
    loss_agg: AggregationMode = "token_mean"
    """How per-token entropies reduce (ops.aggregate)."""
    chunk_size: int = 256
    """Most positions per block (also capped in bytes, divergences/base.py): bounds the softmax temporaries."""

    def __post_init__(self) -> None:
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {self.chunk_size}")
        if self.loss_agg not in AGGREGATION_MODES:
            raise ValueError(f"loss_agg must be one of {', '.join(AGGREGATION_MODES)}, got {self.loss_agg!r}")


def _entropy_block(logits: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(upcast(logits), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def token_entropy(logits: torch.Tensor, chunk_size: int = 256) -> torch.Tensor:
    """H_t = −Σ_v softmax(z_t)_v · log_softmax(z_t)_v, chunked over B·T. (B, T, V) -> (B, T) float32 or wider."""
    return chunked_rowwise(_entropy_block, (logits,), chunk_size)


def entropy_bonus(
    logits: torch.Tensor,
    mask: torch.Tensor,
    p: EntropyParams,
    *,
    global_denominator: torch.Tensor | float | None = None,
) -> LossOut:
    """L_H = −c_H·aggregate(H_t, mask), H_t the entropy of softmax(logits_t).

    Args: logits (B, T, V) aligned with mask (B, T) (position t predicts response token t);
        global_denominator for ``global_token_mean``.
    Returns: LossOut(loss, {entropy: token-mean H over the mask}).
    Ref: arXiv:1707.06347 eq. 9.
    """
    h = token_entropy(logits, p.chunk_size)
    h_masked = torch.where(mask.bool(), h, torch.zeros_like(h))
    loss = -p.coef * aggregate(h_masked, mask, p.loss_agg, global_denominator)
    return LossOut(loss, {"entropy": masked_mean(h.detach(), mask)})
