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

    def select(self, index: torch.Tensor) -> "TokenBatch":
        """Rows ``index`` (a 1-D long tensor; rows may repeat)."""
        return TokenBatch(self.input_ids[index], self.attention_mask[index], self.loss_mask[index])

    def to(self, device: torch.device | str) -> "TokenBatch":
        return TokenBatch(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.loss_mask)))


@dataclass(frozen=True, slots=True)
class RolloutBatch:
    """Sampled sequences with everything the learner's loss needs (the online-RL batch, like verl's DataProto).

    ``tokens.loss_mask`` is True on response tokens (the actions). ``rows`` holds per-row tensors whose
    first dim is B: e.g. ``advantages`` (B, T), ``logp_rollout`` (B, T) log-probs from the generation
    engine aligned with ``input_ids`` (0 off the response), ``rewards`` (B,), ``anchor_logp/<name>`` (B, T).
    """

    tokens: TokenBatch
    rows: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, t in self.rows.items():
            if t.shape[:1] != (len(self.tokens),):
                raise ValueError(f"RolloutBatch.rows[{name!r}] has {t.shape[0]} rows, tokens have {len(self.tokens)}")

    def __len__(self) -> int:
        return len(self.tokens)

    def slice(self, start: int, stop: int) -> "RolloutBatch":
        return RolloutBatch(self.tokens.slice(start, stop), {k: v[start:stop] for k, v in self.rows.items()})

    def select(self, index: torch.Tensor) -> "RolloutBatch":
        return RolloutBatch(self.tokens.select(index), {k: v[index] for k, v in self.rows.items()})

    def to(self, device: torch.device | str) -> "RolloutBatch":
        return RolloutBatch(self.tokens.to(device), {k: v.to(device) for k, v in self.rows.items()})

    def with_rows(self, **rows: torch.Tensor) -> "RolloutBatch":
        return RolloutBatch(self.tokens, {**self.rows, **rows})
