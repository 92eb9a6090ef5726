"""Generalised Advantage Estimation with a value model (PPO with KL-in-reward).

    δ_t = r_t + γ·V(s_{t+1}) − V(s_t)            V after the last response token = 0 (terminal)
    A_t = Σ_{l ≥ 0} (γλ)^l · δ_{t+l}  =  δ_t + γλ·A_{t+1}
    R_t = A_t + V(s_t)                            (the value-model target, "returns")

r_t is the per-token reward of ``base`` (outcome reward on the last response token plus dense rewards
such as −β·k1_t). Masked tokens (padding, or tool output inside a response) are not steps: t+1 means the
next response token, they get A = R = 0 and their values are ignored.
Ref: Schulman et al. 2016, High-Dimensional Continuous Control Using GAE, arXiv:1506.02438 eq. 16
(GAE(γ, λ)); truncated to the episode as in PPO, arXiv:1707.06347 eq. 11-12. R_t = A_t + V(s_t) is the
λ-return value target of PPO implementations.
Deviations from the paper: optional whitening of A over the batch's response tokens (``whiten``, as
verl/OpenRLHF); returns are computed before whitening.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignrl.advantages.base import AdvantageInputs, AdvantageOut, dense_rewards, masked_whiten, require
from alignrl.registry import ADVANTAGES


@dataclass(frozen=True, kw_only=True, slots=True)
class GAEParams:
    gamma: float = 1.0
    """Discount γ."""
    lam: float = 0.95
    """GAE λ: 0 gives the one-step TD error, 1 the Monte-Carlo return minus V."""
    whiten: bool = True
    """Whiten the advantages over the batch's response tokens (returns are not whitened)."""
    eps: float = 1e-8
    """Added to the std when whitening."""


def gae(
    r: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Backward GAE recursion over T, vectorised over B; masked tokens are skipped. (B, T) x3 -> (B, T) x2.

    Returns (A, R = A + V), both 0 on masked tokens.
    """
    m = mask.bool()
    v = torch.where(m, values, torch.zeros_like(values))
    next_v = torch.zeros_like(v[:, 0])  # V of the next response token (0 past the last: terminal)
    next_a = torch.zeros_like(v[:, 0])
    out = []
    for t in reversed(range(r.shape[1])):
        a = r[:, t] + gamma * next_v - v[:, t] + gamma * lam * next_a
        next_v = torch.where(m[:, t], v[:, t], next_v)
        next_a = torch.where(m[:, t], a, next_a)
        out.append(a)
    adv = torch.stack(out[::-1], dim=1) * m.to(v.dtype)
    return adv, (adv + v) * m.to(v.dtype)


@ADVANTAGES.register("gae", params=GAEParams)
@torch.no_grad()
def gae_advantages(x: AdvantageInputs, p: GAEParams) -> AdvantageOut:
    """A_t = Σ_l (γλ)^l δ_{t+l}, δ_t = r_t + γV(s_{t+1}) − V(s_t); R_t = A_t + V(s_t).

    Args: x.rewards (B,), x.mask (B, T), x.values (B, T) (required), x.token_rewards (B, T) optional.
    Returns: AdvantageOut(adv (B, T) (whitened if p.whiten), returns (B, T)).
    Ref: arXiv:1506.02438 eq. 16; arXiv:1707.06347 eq. 11-12.
    """
    values = require(x, "values", "gae").detach()
    adv, returns = gae(dense_rewards(x), values, x.mask, p.gamma, p.lam)
    if p.whiten:
        adv = masked_whiten(adv, x.mask, p.eps)
    return AdvantageOut(adv, returns)
