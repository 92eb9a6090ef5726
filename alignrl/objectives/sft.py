"""Supervised fine-tuning: negative log-likelihood of the target tokens.

L = aggregate(−log π_θ(x_t | x_<t), mask)   (maximum likelihood; mode from ``ops.aggregate``)
Deviations: none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from alignrl.ops import aggregate, masked_mean
from alignrl.registry import TRAIN_LOSSES
from alignrl.types import LossOut


@dataclass(frozen=True, kw_only=True, slots=True)
class SFTParams:
    loss_agg: Literal["token_mean", "seq_mean_token_mean", "seq_mean_token_sum"] = "token_mean"
    """How per-token NLL is reduced to the loss (see ops.aggregate)."""


@TRAIN_LOSSES.register("sft", params=SFTParams)
def sft_loss(logp: torch.Tensor, mask: torch.Tensor, p: SFTParams) -> LossOut:
    """NLL = aggregate(−logp, mask, p.loss_agg).

    Args: logp (B, T) log π_θ of the target tokens; mask (B, T) bool, True on targets.
    Returns: LossOut(loss, {nll: token-mean NLL, tokens: number of target tokens}).
    """
    nll = -logp
    loss = aggregate(nll, mask, p.loss_agg)
    metrics = {"nll": masked_mean(nll, mask).detach(), "tokens": mask.sum().to(logp.dtype).detach()}
    return LossOut(loss, metrics)
