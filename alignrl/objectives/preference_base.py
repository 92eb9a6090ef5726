"""Inputs and shared helpers of the preference losses (DPO family) in ``PREFERENCE_LOSSES``.

Every registered preference loss has one signature, so drivers never branch on the name:

    loss(x: PreferenceInputs, p: Params) -> LossOut

``x`` carries sequence sums over the response tokens (y_w = chosen, y_l = rejected),
ρ(y) = log π_θ(y) − log π_ref(y) is the sequence log-ratio, h = ρ(y_w) − ρ(y_l) the DPO margin. Losses
read only the fields they need and raise ``ValueError`` naming any that are missing. The loss is the
mean of the per-pair losses over the batch; metrics are detached batch means:

    reward_chosen, reward_rejected   implicit rewards (β·ρ unless the loss's docstring says otherwise)
    reward_margin                    reward_chosen − reward_rejected (mean over pairs)
    reward_accuracy                  fraction of pairs with reward(y_w) > reward(y_l) (ties count 0)

All arithmetic runs in float32 or wider (bf16/fp16 inputs are upcast; float64 stays float64).
Deviations from the papers: none here (see each loss module).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable

import torch
import torch.nn.functional as F

from alignrl.ops import upcast
from alignrl.types import LossOut

PreferenceLoss = Callable[["PreferenceInputs", Any], LossOut]

_SEQ_FIELDS = (
    "logp_chosen", "logp_rejected", "logp_ref_chosen", "logp_ref_rejected", "len_chosen", "len_rejected",
    "logp_prev_chosen", "logp_prev_rejected", "logp_teacher_chosen", "logp_teacher_rejected",
    "reward_chosen", "reward_rejected",
)
_TOKEN_PAIRS = (("kl_chosen", "mask_chosen"), ("kl_rejected", "mask_rejected"))


@dataclass(frozen=True, kw_only=True, slots=True)
class PreferenceInputs:
    """One batch of B preference pairs (y_w ≻ y_l per prompt) as sums over response tokens.

    Every field is optional; each loss states (and checks) which ones it reads.
    """

    # sequence sums Σ_t over the response tokens, (B,)
    logp_chosen: torch.Tensor | None = None  # (B,) log π_θ(y_w), with grad
    logp_rejected: torch.Tensor | None = None  # (B,) log π_θ(y_l), with grad
    logp_ref_chosen: torch.Tensor | None = None  # (B,) log π_ref(y_w), no grad
    logp_ref_rejected: torch.Tensor | None = None  # (B,) log π_ref(y_l), no grad
    # response lengths |y| for length normalisation (SimPO; IPO/DPO with length_normalize), (B,)
    len_chosen: torch.Tensor | None = None  # (B,) token count of y_w (≥ 1)
    len_rejected: torch.Tensor | None = None  # (B,) token count of y_l (≥ 1)
    # token level (TDPO): per-position KL(π_ref(·|x, y_<t) ‖ π_θ(·|x, y_<t)), see tdpo.token_kl
    kl_chosen: torch.Tensor | None = None  # (B, T) on y_w, with grad in π_θ
    mask_chosen: torch.Tensor | None = None  # (B, T) bool, True on response tokens of y_w
    kl_rejected: torch.Tensor | None = None  # (B, T') on y_l
    mask_rejected: torch.Tensor | None = None  # (B, T') bool
    # previous iterate π_t (INPO), (B,)
    logp_prev_chosen: torch.Tensor | None = None  # (B,) log π_t(y_w), no grad
    logp_prev_rejected: torch.Tensor | None = None  # (B,) log π_t(y_l), no grad
    # teacher as reference (DPKD): y_w a teacher output, y_l a student output, (B,)
    logp_teacher_chosen: torch.Tensor | None = None  # (B,) log p_T(y_w), no grad
    logp_teacher_rejected: torch.Tensor | None = None  # (B,) log p_T(y_l), no grad
    # scalar scores of the two responses (CoPG: arbitrary rewards; the pair need not be ordered), (B,)
    reward_chosen: torch.Tensor | None = None  # (B,) r(y) of the first response
    reward_rejected: torch.Tensor | None = None  # (B,) r(y′) of the second response
    # K self-generated samples per prompt (D²O), (B, K)
    logp_samples: torch.Tensor | None = None  # (B, K) log π_θ(y_i), with grad
    logp_ref_samples: torch.Tensor | None = None  # (B, K) log π_ref(y_i), no grad

    def __post_init__(self) -> None:
        shapes = {n: tuple(getattr(self, n).shape) for n in _SEQ_FIELDS if getattr(self, n) is not None}
        if len(set(shapes.values())) > 1 or any(len(s) != 1 for s in shapes.values()):
            raise ValueError(f"PreferenceInputs: sequence fields must all be (B,), got {shapes}")
        for kl, mask in _TOKEN_PAIRS:
            a, m = getattr(self, kl), getattr(self, mask)
            if (a is None) != (m is None):
                raise ValueError(f"PreferenceInputs: {kl} and {mask} must be given together")
            if a is not None and (a.dim() != 2 or a.shape != m.shape):
                raise ValueError(
                    f"PreferenceInputs: {kl} {tuple(a.shape)} and {mask} {tuple(m.shape)} must be equal (B, T)"
                )
        s, r = self.logp_samples, self.logp_ref_samples
        if (s is None) != (r is None) or (s is not None and (s.dim() != 2 or s.shape != r.shape)):
            raise ValueError("PreferenceInputs: logp_samples and logp_ref_samples must be given together, equal (B, K)")
        sizes = {t.shape[0] for t in (getattr(self, f.name) for f in fields(self)) if t is not None}
        if len(sizes) > 1:
            raise ValueError(f"PreferenceInputs: batch sizes differ across fields: {sorted(sizes)}")


def require(x: PreferenceInputs, loss: str, *names: str) -> tuple[torch.Tensor, ...]:
    """The named fields of ``x`` upcast to fp32-or-wider; raises ValueError listing the missing ones."""
    missing = [n for n in names if getattr(x, n) is None]
    if missing:
        raise ValueError(f"preference loss {loss!r} needs PreferenceInputs fields {missing}")
    return tuple(upcast(getattr(x, n)) for n in names)


def log_ratios(x: PreferenceInputs, loss: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(ρ(y_w), ρ(y_l)), ρ(y) = log π_θ(y) − log π_ref(y). (B,), (B,)."""
    lw, ll, rw, rl = require(x, loss, "logp_chosen", "logp_rejected", "logp_ref_chosen", "logp_ref_rejected")
    return lw - rw, ll - rl


def per_token(
    x: PreferenceInputs, loss: str, chosen: torch.Tensor, rejected: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen/|y_w|, rejected/|y_l|): length normalisation of two (B,) sequence sums."""
    len_w, len_l = require(x, loss, "len_chosen", "len_rejected")
    return chosen / len_w.to(chosen.dtype), rejected / len_l.to(rejected.dtype)


def sigmoid_loss(z: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """ℓ(z) = −(1−ε)·log σ(z) − ε·log σ(−z) per pair (BCE with target 1−ε); ∂ℓ/∂z = σ(z) − (1−ε)."""
    loss = -F.logsigmoid(z)
    if label_smoothing:
        loss = (1.0 - label_smoothing) * loss - label_smoothing * F.logsigmoid(-z)
    return loss


def seq_kl(kl: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """D_SeqKL(y) = Σ_t mask_t·KL_t over the response tokens. (B, T), (B, T) -> (B,)."""
    kl = upcast(kl)
    return torch.where(mask.bool(), kl, torch.zeros_like(kl)).sum(-1)  # where, not ×: padding may hold inf


def pair_metrics(reward_chosen: torch.Tensor, reward_rejected: torch.Tensor, **extra: torch.Tensor) -> dict:
    """Detached batch means: reward_chosen, reward_rejected, reward_margin, reward_accuracy (+ extra means)."""
    rc, rr = reward_chosen.detach(), reward_rejected.detach()
    out = {
        "reward_chosen": rc.mean(), "reward_rejected": rr.mean(), "reward_margin": (rc - rr).mean(),
        "reward_accuracy": (rc > rr).to(rc.dtype).mean(),
    }
    out.update({k: v.detach().mean() for k, v in extra.items()})
    return out


def check_beta(name: str, beta: float) -> None:
    if not beta > 0:
        raise ValueError(f"{name}: beta must be > 0, got {beta}")


def check_smoothing(name: str, eps: float, *, upper: float = 0.5, closed: bool = True) -> None:
    ok = 0.0 <= eps <= upper if closed else 0.0 <= eps < upper
    if not ok:
        bracket = "]" if closed else ")"
        raise ValueError(f"{name}: label_smoothing must be in [0, {upper}{bracket}, got {eps}")
