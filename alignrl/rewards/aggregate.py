"""Reward-model ensemble aggregation: K members' scores of the same B completions -> one reward each.

mean:  r = (1/K) Σ_k r_k
wco:   r = min_k r_k                                   (worst-case optimization)
uwo:   r = (1/K) Σ_k r_k − λ · Var_k(r_k)              (uncertainty-weighted optimization; population variance)
Ref: Coste et al. 2023, "Reward Model Ensembles Help Mitigate Overoptimization", arXiv:2310.02743 (WCO, UWO);
UP-RLHF (Zhai et al. 2023, arXiv:2401.00243) penalizes the standard deviation instead: ``uwo`` with
``penalty: std``. Deviations: none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from alignrl.registry import REWARD_AGGREGATIONS


@dataclass(frozen=True, kw_only=True, slots=True)
class MeanParams:
    pass


@dataclass(frozen=True, kw_only=True, slots=True)
class WCOParams:
    pass


@dataclass(frozen=True, kw_only=True, slots=True)
class UWOParams:
    lam: float = 0.1
    """λ ≥ 0: the weight of the members' disagreement (Coste et al. sweep it; 0 is the mean)."""
    penalty: Literal["var", "std"] = "var"
    """var: Coste et al.'s UWO; std: UP-RLHF's uncertainty penalty."""

    def __post_init__(self) -> None:
        if self.lam < 0:
            raise ValueError(f"uwo: lam must be >= 0, got {self.lam}")


def _check(scores: torch.Tensor) -> None:
    if scores.ndim != 2 or scores.shape[0] < 1:
        raise ValueError(f"member scores must be (K, B) with K >= 1, got shape {tuple(scores.shape)}")


@REWARD_AGGREGATIONS.register("mean", params=MeanParams)
def mean(scores: torch.Tensor, p: MeanParams) -> torch.Tensor:
    """r = (1/K) Σ_k r_k. Args: scores (K, B) member scores. Returns (B,)."""
    _check(scores)
    return scores.mean(0)


@REWARD_AGGREGATIONS.register("wco", params=WCOParams)
def wco(scores: torch.Tensor, p: WCOParams) -> torch.Tensor:
    """Worst-case optimization: r = min_k r_k (Coste et al., arXiv:2310.02743). Args: scores (K, B). Returns (B,)."""
    _check(scores)
    return scores.min(0).values


@REWARD_AGGREGATIONS.register("uwo", params=UWOParams)
def uwo(scores: torch.Tensor, p: UWOParams) -> torch.Tensor:
    """Uncertainty-weighted optimization: r = mean_k r_k − λ·Var_k(r_k) (population variance; ``penalty: std``
    uses the standard deviation, UP-RLHF). Ref: arXiv:2310.02743. Args: scores (K, B). Returns (B,)."""
    _check(scores)
    spread = scores.var(0, unbiased=False)
    if p.penalty == "std":
        spread = spread.sqrt()
    return scores.mean(0) - p.lam * spread


def aggregate_rewards(scores: torch.Tensor, name: str, params: object) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Aggregate (K, B) member scores with the registered rule ``name``; also the metrics a run logs: each
    member's mean score and the mean across completions of the members' standard deviation (disagreement)."""
    reward = REWARD_AGGREGATIONS.get(name)(scores, params)
    metrics = {f"member{k}": scores[k].mean() for k in range(scores.shape[0])}
    metrics["disagreement"] = scores.std(0, unbiased=False).mean()
    return reward, metrics
