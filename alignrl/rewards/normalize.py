"""Reward normalization before rewards are combined: running statistics over the run, or per prompt group.

running:  r̂ = (r − μ_t) / (σ_t + ε), with μ_t, σ_t the mean and std of every reward seen so far, this batch
          included (Welford / Chan et al.'s parallel update; the state is checkpointed so resume is exact)
group:    r̂ = (r − mean_group) / (std_group + ε) over the G completions of one prompt
Why normalize: a learned reward model's scale is arbitrary, so a weighted sum with a 0/1 verifier only means
something once each term is on a common scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

EPS = 1e-6


@dataclass(frozen=True, slots=True)
class RunningStats:
    """Count, mean and sum of squared deviations (M2) of every value seen; immutable, ``update`` returns new."""

    count: float = 0.0
    mean: float = 0.0
    m2: float = 0.0

    @property
    def std(self) -> float:
        return (self.m2 / self.count) ** 0.5 if self.count > 0 else 1.0

    def update(self, values: torch.Tensor) -> "RunningStats":
        """Merge a batch's statistics (Chan et al.'s pairwise update: exact, order-independent up to rounding)."""
        v = values.detach().double().flatten()
        n = float(v.numel())
        if n == 0:
            return self
        batch_mean = float(v.mean())
        batch_m2 = float(((v - batch_mean) ** 2).sum())
        total = self.count + n
        delta = batch_mean - self.mean
        return RunningStats(total, self.mean + delta * n / total, self.m2 + batch_m2 + delta**2 * self.count * n / total)


def normalize_running(rewards: torch.Tensor, stats: RunningStats) -> tuple[torch.Tensor, RunningStats]:
    """(r − μ)/(σ + ε) with the statistics updated by this batch first; returns the new statistics too."""
    stats = stats.update(rewards)
    return (rewards - stats.mean) / (stats.std + EPS), stats


def normalize_group(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """(r − mean)/(std + ε) within each run of ``group_size`` consecutive rewards (one prompt's samples).
    Args: rewards (B,) with B a multiple of group_size. Returns (B,)."""
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    g = rewards.view(-1, group_size)
    return ((g - g.mean(1, keepdim=True)) / (g.std(1, unbiased=False, keepdim=True) + EPS)).flatten()
