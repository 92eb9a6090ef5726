"""Masked reductions and the one token -> scalar loss aggregation function."""

from __future__ import annotations

from typing import Literal

import torch

AggregationMode = Literal["token_mean", "seq_mean_token_mean", "seq_mean_token_sum", "global_token_mean"]
AGGREGATION_MODES: tuple[str, ...] = ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum", "global_token_mean")


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Σ x·mask over ``dim`` (all dims if None)."""
    x = x * mask.to(x.dtype)
    return x.sum() if dim is None else x.sum(dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Σ x·mask / max(Σ mask, 1) over ``dim``; an all-masked row gives 0, never NaN."""
    m = mask.to(x.dtype)
    return (masked_sum(x, m) / m.sum().clamp_min(1.0)) if dim is None else masked_sum(x, m, dim) / m.sum(dim).clamp_min(1.0)


def aggregate(
    per_token: torch.Tensor,
    mask: torch.Tensor,
    mode: str = "token_mean",
    global_denominator: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Reduce a (B, T) per-token loss to a scalar.

    token_mean:          Σ_bt ℓ·m / Σ_bt m                     (DAPO, arXiv:2503.14476 eq. 12)
    seq_mean_token_mean: (1/B) Σ_b [Σ_t ℓ·m / Σ_t m]            (GRPO, arXiv:2402.03300 eq. 3)
    seq_mean_token_sum:  (1/B) Σ_b Σ_t ℓ·m                      (Dr. GRPO, arXiv:2503.20783)
    global_token_mean:   Σ_bt ℓ·m / N_global                     (N_global = tokens over all DP ranks and
                                                                   micro-batches, so shards sum to the full-batch value)
    Args: per_token (B, T); mask (B, T) bool/0-1. Returns a () tensor.
    """
    if mode == "token_mean":
        return masked_mean(per_token, mask)
    if mode == "seq_mean_token_mean":
        return masked_mean(per_token, mask, dim=-1).mean()
    if mode == "seq_mean_token_sum":
        return masked_sum(per_token, mask, dim=-1).mean()
    if mode == "global_token_mean":
        if global_denominator is None:
            raise ValueError("aggregate(mode='global_token_mean') needs global_denominator")
        return masked_sum(per_token, mask) / global_denominator
    raise ValueError(f"unknown aggregation mode {mode!r}; known: {', '.join(AGGREGATION_MODES)}")
