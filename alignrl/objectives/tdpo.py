"""TDPO: token-level DPO with a sequential forward-KL term per response (TDPO1 and TDPO2).

    ρ(y) = Σ_t [log π_θ(y_t|x, y_<t) − log π_ref(y_t|x, y_<t)]
    D(y) = D_SeqKL(x, y; π_ref‖π_θ) = Σ_t KL(π_ref(·|x, y_<t) ‖ π_θ(·|x, y_<t))   (full vocabulary)
    tdpo1:  z = β·([ρ(y_w) − ρ(y_l)] − [D(y_l) − D(y_w)])
    tdpo2:  z = β·([ρ(y_w) − ρ(y_l)] − α·[D(y_l) − sg(D(y_w))])       (sg: stop-gradient)
    ℓ = −log σ(z),   L = (1/B)·Σ_pairs ℓ

The per-position KL comes from the logits of both models; ``token_kl`` computes it with the
divergences registry's chunked full form (``forward_kl``: KL(q‖p) with q = π_ref the anchor) and never
materialises a (B, T, V) activation for backward.
Ref: Zeng et al. 2024, "Token-level Direct Preference Optimization", arXiv:2404.11999 §4 (TDPO1 and
TDPO2 losses; verify eq. nos.); the authors' code (github.com/Vance0124/Token-level-Direct-Preference-
Optimization, trainers.py ``tdpo_loss``), whose defaults are α = 0.5, β = 0.1.
Deviations from the paper: metrics report the DPO reward β·ρ; the authors' code logs β·(ρ + D).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import alignrl.divergences  # noqa: F401  (registers forward_kl)
from alignrl.objectives.preference_base import (
    PreferenceInputs,
    check_beta,
    log_ratios,
    pair_metrics,
    require,
    seq_kl,
    sigmoid_loss,
)
from alignrl.registry import DIVERGENCES, PREFERENCE_LOSSES
from alignrl.types import LossOut


@dataclass(frozen=True, kw_only=True, slots=True)
class TDPO1Params:
    beta: float = 0.1
    """β > 0 (the authors' default 0.1)."""

    def __post_init__(self) -> None:
        check_beta("tdpo1", self.beta)


@dataclass(frozen=True, kw_only=True, slots=True)
class TDPO2Params:
    beta: float = 0.1
    """β > 0 (the authors' default 0.1)."""
    alpha: float = 0.5
    """α ≥ 0, weight of the sequential-KL difference (the authors' default 0.5); α = 1 is TDPO1's value."""

    def __post_init__(self) -> None:
        check_beta("tdpo2", self.beta)
        if not self.alpha >= 0:
            raise ValueError(f"tdpo2: alpha must be ≥ 0, got {self.alpha}")


def token_kl(logits: torch.Tensor, logits_ref: torch.Tensor, *, chunk_size: int = 256) -> torch.Tensor:
    """KL(π_ref(·|y_<t) ‖ π_θ(·|y_<t)) per position from (B, T, V) logits of the policy and the reference.

    Args: logits (B, T, V) policy, with grad; logits_ref (B, T, V) reference (pass it detached).
    Returns: (B, T), fp32 or wider, differentiable in ``logits`` (chunked; see divergences/base.py).
    """
    kl = DIVERGENCES.get("forward_kl")
    return kl.full(logits, logits_ref, DIVERGENCES.entry("forward_kl").params(chunk_size=chunk_size))


def _inputs(x: PreferenceInputs, loss: str) -> tuple[torch.Tensor, ...]:
    rho_w, rho_l = log_ratios(x, loss)
    kl_w, m_w, kl_l, m_l = require(x, loss, "kl_chosen", "mask_chosen", "kl_rejected", "mask_rejected")
    return rho_w, rho_l, seq_kl(kl_w, m_w), seq_kl(kl_l, m_l)


@PREFERENCE_LOSSES.register("tdpo1", params=TDPO1Params)
def tdpo1_loss(x: PreferenceInputs, p: TDPO1Params) -> LossOut:
    """L = −(1/B)·Σ log σ(β·([ρ(y_w) − ρ(y_l)] − [D(y_l) − D(y_w)])),  D = Σ_t KL(π_ref‖π_θ) (masked).

    Args: x.logp_chosen, x.logp_rejected (B,) with grad; x.logp_ref_chosen, x.logp_ref_rejected (B,);
        x.kl_chosen (B, T), x.kl_rejected (B, T') per-position KL (``token_kl``), with grad;
        x.mask_chosen, x.mask_rejected bool masks of the response tokens.
    Returns: LossOut(loss (), {reward_chosen, reward_rejected = β·ρ, reward_margin, reward_accuracy,
        seq_kl_chosen, seq_kl_rejected}).
    Ref: arXiv:2404.11999 §4 (TDPO1).
    """
    rho_w, rho_l, d_w, d_l = _inputs(x, "tdpo1")
    loss = sigmoid_loss(p.beta * ((rho_w - rho_l) - (d_l - d_w))).mean()
    return LossOut(loss, pair_metrics(p.beta * rho_w, p.beta * rho_l, seq_kl_chosen=d_w, seq_kl_rejected=d_l))


@PREFERENCE_LOSSES.register("tdpo2", params=TDPO2Params)
def tdpo2_loss(x: PreferenceInputs, p: TDPO2Params) -> LossOut:
    """L = −(1/B)·Σ log σ(β·([ρ(y_w) − ρ(y_l)] − α·[D(y_l) − sg(D(y_w))])).

    The stop-gradient on D(y_w) keeps the loss from raising the chosen response's KL to widen the margin.
    Args: as tdpo1_loss.
    Returns: LossOut(loss (), {reward_chosen, reward_rejected = β·ρ, reward_margin, reward_accuracy,
        seq_kl_chosen, seq_kl_rejected}).
    Ref: arXiv:2404.11999 §4 (TDPO2).
    """
    rho_w, rho_l, d_w, d_l = _inputs(x, "tdpo2")
    loss = sigmoid_loss(p.beta * ((rho_w - rho_l) - p.alpha * (d_l - d_w.detach()))).mean()
    return LossOut(loss, pair_metrics(p.beta * rho_w, p.beta * rho_l, seq_kl_chosen=d_w, seq_kl_rejected=d_l))
