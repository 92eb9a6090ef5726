"""What every advantage estimator takes and returns, and the group/whitening statistics they share.

One uniform signature for the ``ADVANTAGES`` registry, so drivers never branch on names:

    estimator(x: AdvantageInputs, p: Params) -> AdvantageOut        # adv (B, T), returns (B, T) | None

Reward convention (all estimators): the outcome reward r(x, y) is credited at the last response token,
optional dense rewards (e.g. a KL-in-reward penalty −β·k1_t computed with ``alignrl.divergences``) are
added at every response token, so the per-token reward is

    r_t = token_rewards_t + 1[t = last response token]·r(x, y)          (masked tokens: 0)

and the sequence return used by sequence-level estimators is R = Σ_t r_t = r(x, y) + Σ_t token_rewards_t
(TRL's RLOO ``rewards − β·Σ_t kl_t``). Everything here is computed without gradient (advantages are
constants in the policy loss).
Deviations from the papers: none (this module only hosts shared helpers).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignrl.ops import masked_mean, masked_sum


@dataclass(frozen=True, kw_only=True, slots=True)
class AdvantageInputs:
    """Rollout quantities an estimator may use; each estimator says which optional fields it needs."""

    rewards: torch.Tensor                      # (B,) outcome reward r(x, y)
    mask: torch.Tensor                         # (B, T) bool, True on response tokens (the actions)
    token_rewards: torch.Tensor | None = None  # (B, T) dense rewards on top, e.g. −β·k1_t (KL in reward)
    values: torch.Tensor | None = None         # (B, T) V(s_t) of the value model at each action (GAE)
    group_index: torch.Tensor | None = None    # (B,) long; equal ids = samples of the same prompt

    def __post_init__(self) -> None:
        if self.mask.dim() != 2 or self.rewards.shape != self.mask.shape[:1]:
            raise ValueError(
                f"AdvantageInputs: rewards must be (B,) and mask (B, T); got {tuple(self.rewards.shape)}, "
                f"{tuple(self.mask.shape)}"
            )
        for name in ("token_rewards", "values"):
            t = getattr(self, name)
            if t is not None and t.shape != self.mask.shape:
                raise ValueError(f"AdvantageInputs: {name} must be (B, T) = {tuple(self.mask.shape)}, got {tuple(t.shape)}")
        if self.group_index is not None and self.group_index.shape != self.rewards.shape:
            raise ValueError(f"AdvantageInputs: group_index must be (B,), got {tuple(self.group_index.shape)}")


@dataclass(frozen=True, slots=True)
class AdvantageOut:
    adv: torch.Tensor                   # (B, T) advantages, 0 on masked tokens
    returns: torch.Tensor | None = None  # (B, T) value-model targets (GAE), 0 on masked tokens; None otherwise


def contiguous_groups(batch_size: int, group_size: int, device: torch.device | str | None = None) -> torch.Tensor:
    """group_index for a batch laid out prompt by prompt, ``group_size`` samples each: [0,0,…,1,1,…]. (B,) long."""
    if group_size < 1 or batch_size % group_size:
        raise ValueError(f"batch_size {batch_size} is not a multiple of group_size {group_size}")
    return torch.arange(batch_size, device=device) // group_size


def require(x: AdvantageInputs, field: str, estimator: str) -> torch.Tensor:
    """The optional input ``field`` of ``x``, or a ValueError naming the estimator that needs it."""
    value = getattr(x, field)
    if value is None:
        raise ValueError(f"advantage estimator {estimator!r} needs AdvantageInputs.{field}")
    return value


def last_token_onehot(mask: torch.Tensor) -> torch.Tensor:
    """1 at the last True position of each row, 0 elsewhere (an all-False row stays 0). (B, T) bool."""
    m = mask.bool()
    after = m.flip(-1).long().cumsum(-1).flip(-1)  # (B, T) number of response tokens at or after t
    return m & (after == 1)


@torch.no_grad()
def dense_rewards(x: AdvantageInputs) -> torch.Tensor:
    """r_t = token_rewards_t + 1[t = last]·r, 0 on masked tokens. (B, T) in the rewards' dtype."""
    r = last_token_onehot(x.mask).to(x.rewards.dtype) * x.rewards.unsqueeze(-1)
    if x.token_rewards is not None:
        r = r + torch.where(x.mask.bool(), x.token_rewards, torch.zeros_like(x.token_rewards))
    return r


@torch.no_grad()
def sequence_returns(x: AdvantageInputs) -> torch.Tensor:
    """R = r + Σ_t token_rewards_t over response tokens. (B,)"""
    if x.token_rewards is None:
        return x.rewards
    return x.rewards + masked_sum(x.token_rewards, x.mask, dim=-1)


def broadcast_to_tokens(adv_seq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A_b on every response token of row b, 0 on masked ones. (B,) -> (B, T)."""
    return adv_seq.unsqueeze(-1) * mask.to(adv_seq.dtype)


@torch.no_grad()
def group_mean_std(
    x: torch.Tensor, group_index: torch.Tensor, unbiased: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample mean, std and size of its group (group ids need not be contiguous or sorted).

    mean_g = (1/n_g) Σ_{i∈g} x_i;  std_g = sqrt(Σ_{i∈g} (x_i − mean_g)² / (n_g − 1))   (n_g if not unbiased)
    A one-sample group gets std 0 (not NaN). Args: x (B,); group_index (B,) long. Returns three (B,) tensors.
    """
    ids, inv = torch.unique(group_index, return_inverse=True)  # inv: (B,) ids compacted to 0..G-1
    count = torch.zeros(ids.shape[0], dtype=x.dtype, device=x.device).index_add_(0, inv, torch.ones_like(x))
    mean = torch.zeros_like(count).index_add_(0, inv, x) / count
    sq = torch.zeros_like(count).index_add_(0, inv, (x - mean[inv]) ** 2)
    denom = (count - 1.0).clamp_min(1.0) if unbiased else count
    return mean[inv], (sq / denom).sqrt()[inv], count[inv]


@torch.no_grad()
def masked_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float, unbiased: bool = False) -> torch.Tensor:
    """(x − mean)/(std + eps) with mean and std over the True positions of ``mask``; 0 where masked.

    Works for (B,) sequence values with an all-True mask and for (B, T) token values alike.
    """
    m = mask.to(x.dtype)
    mean = masked_mean(x, m)
    n = m.sum()
    var = masked_sum((x - mean) ** 2, m) / ((n - 1.0).clamp_min(1.0) if unbiased else n.clamp_min(1.0))
    return (x - mean) / (var.sqrt() + eps) * m
