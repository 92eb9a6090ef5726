"""REINFORCE++: per-token return to go, normalised over the whole (global) batch.

    r_t = token_rewards_t + 1[t = last]·r(x, y)       token_rewards = −β·KL_t when the KL is in the reward
    G_t = Σ_{t' ≥ t} γ^{t'−t} r_{t'}                  (over response tokens)
    A_t = (G_t − mean_{batch tokens} G) / (std_{batch tokens} G + eps)

``group_baseline=True`` is REINFORCE++-baseline: the outcome reward first has its prompt group's mean
subtracted (r ← r − mean_g r), then the same global normalisation.
Ref: Hu 2025, REINFORCE++, arXiv:2501.03262 §3 (token-level KL penalty in the reward, A_t as the
return to go, global batch advantage normalisation; equation numbers to verify).
Deviations from the paper: the KL penalty is an input (dense ``token_rewards``), computed by the caller
with ``alignrl.divergences``; whitening uses the population std (as OpenRLHF) unless ``unbiased_std``.
"Global" means the batch passed in: call it on the whole rollout batch, before any DP split.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignrl.advantages.base import AdvantageInputs, AdvantageOut, dense_rewards, group_mean_std, masked_whiten, require
from alignrl.registry import ADVANTAGES


@dataclass(frozen=True, kw_only=True, slots=True)
class ReinforcePPParams:
    gamma: float = 1.0
    """Discount γ of the return to go."""
    group_baseline: bool = False
    """Subtract the prompt group's mean outcome reward first (REINFORCE++-baseline; needs group_index)."""
    unbiased_std: bool = False
    """Bessel's correction in the batch std (OpenRLHF uses the population std)."""
    eps: float = 1e-8
    """Added to the batch std: a batch of equal returns gets advantage 0."""


def discounted_returns(r: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """G_t = Σ_{t' ≥ t, response} γ^{(#response tokens from t to t')} r_{t'}; masked tokens are skipped, get 0.

    Args: r (B, T) per-token rewards (0 where masked); mask (B, T). Returns (B, T).
    """
    m = mask.to(r.dtype)
    g = torch.zeros_like(r[:, 0])
    out = []
    for t in reversed(range(r.shape[1])):
        g = torch.where(mask[:, t].bool(), r[:, t] + gamma * g, g)  # a masked token passes G through
        out.append(g)
    return torch.stack(out[::-1], dim=1) * m


@ADVANTAGES.register("reinforce_pp", params=ReinforcePPParams)
@torch.no_grad()
def reinforce_pp_advantages(x: AdvantageInputs, p: ReinforcePPParams) -> AdvantageOut:
    """A_t = whiten_batch(Σ_{t'≥t} γ^{t'−t} r_{t'}) over all response tokens of the batch.

    Args: x.rewards (B,), x.mask (B, T), x.token_rewards (B, T) optional (e.g. −β·k1_t),
        x.group_index (B,) when ``group_baseline``.
    Returns: AdvantageOut(adv (B, T), returns=None).
    Ref: arXiv:2501.03262 §3.
    """
    if p.group_baseline:
        mean = group_mean_std(x.rewards, require(x, "group_index", "reinforce_pp(group_baseline)"))[0]
        x = AdvantageInputs(rewards=x.rewards - mean, mask=x.mask, token_rewards=x.token_rewards)
    g = discounted_returns(dense_rewards(x), x.mask, p.gamma)
    return AdvantageOut(masked_whiten(g, x.mask, p.eps, p.unbiased_std))
