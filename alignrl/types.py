"""Typed containers that move between stages (pure set: torch only)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True, slots=True)
class LossOut:
    """A scalar loss to backpropagate and detached metrics for logging."""

    loss: torch.Tensor                                          # () scalar, with grad
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)  # detached scalars


@dataclass(frozen=True, slots=True)
class TokenBatch:
    """Token sequences for teacher-forced training (SFT, and the base of RL/preference batches)."""

    input_ids: torch.Tensor       # (B, T) long, left or right padded
    attention_mask: torch.Tensor  # (B, T) long/bool, 1 on real tokens
    loss_mask: torch.Tensor       # (B, T) bool, True where token t is a target (predicted from < t)

    def __post_init__(self) -> None:
        if not (self.input_ids.shape == self.attention_mask.shape == self.loss_mask.shape):
            raise ValueError(
                f"TokenBatch shapes differ: input_ids {tuple(self.input_ids.shape)}, "
                f"attention_mask {tuple(self.attention_mask.shape)}, loss_mask {tuple(self.loss_mask.shape)}"
            )

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def slice(self, start: int, stop: int) -> "TokenBatch":
        """Rows ``start:stop`` (for micro-batches and data-parallel shards)."""
        return TokenBatch(self.input_ids[start:stop], self.attention_mask[start:stop], self.loss_mask[start:stop])
