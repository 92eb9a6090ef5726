"""TAID: temporally adaptive interpolated distillation.

The student is pulled towards an intermediate target that moves from (a copy of) itself to the teacher:

    p_t = softmax(((1 − t)·sg(z_S) + t·z_T)/τ)        interpolation in logit space, sg = stop-gradient
    ℓ_t = KL(p_t ‖ q_θ),  q_θ = softmax(z_S/τ);       L = aggregate(w_t·ℓ_t, mask, loss_agg)
    ∂ℓ_t/∂z_S = (q_θ − p_t)/τ                          (p_t is a constant for the gradient)

t = 0 gives ℓ = 0 (the target is the student itself); t = 1 gives KL(p_T‖q_θ), the ``fkl`` loss.
t is a float parameter chosen by ``TAIDSchedule`` (stateful, lives in the loop; this module's loss is
pure): t_lin = t_start + (t_end − t_start)·step/total_steps; δ = (L_prev − L)/(L_prev + ε);
m ← β·m + (1 − β)·δ; t ← min(t_end, max(t_lin, t + α·sigmoid(m)·(1 − t))).
Ref: Shing et al. 2025, "TAID: Temporally Adaptive Interpolated Distillation for Efficient Knowledge
Transfer in Language Models", ICLR 2025, arXiv:2501.16937 (§3 eq. for p_t and Algorithm 1; verify eq.
numbers) and its public reference code (github.com/SakanaAI/TAID: defaults t_start 0.4, t_end 1.0,
α 5e-4, β 0.99).
Deviations from the paper: (1) the temperature τ is an extension (τ = 1 is the paper). (2) The reference
code's loss value is the cross-entropy H(p_t, q_θ) = KL(p_t‖q_θ) + H(p_t); this loss is the KL itself
(same gradient, since H(p_t) has none), so a schedule fed this loss sees smaller values, hence larger
relative changes δ, than the reference code's; feed it H(p_t, q_θ) (not computed here) to reproduce
the reference schedule exactly. (3) The schedule counts ``update`` calls as steps unless given one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from alignrl.divergences.base import chunked_rowwise, log_softmax_t
from alignrl.objectives.distill_base import (
    DistillInputs,
    DistillParams,
    check_distill_params,
    distill_loss_from_per_token,
    guard_masked_rows,
)
from alignrl.ops import upcast
from alignrl.registry import DISTILL_LOSSES, DIVERGENCES
from alignrl.types import LossOut


@dataclass(frozen=True, kw_only=True, slots=True)
class TAIDParams(DistillParams):
    t: float = 0.4
    """Interpolation t ∈ [0, 1] for this step (TAIDSchedule.t); 0 = the student itself, 1 = the teacher."""

    def __post_init__(self) -> None:
        check_distill_params(self)
        if not 0.0 <= self.t <= 1.0:
            raise ValueError(f"taid t must be in [0, 1], got {self.t}")


def taid_per_token(x: DistillInputs, p: TAIDParams) -> torch.Tensor:
    """KL(p_t‖q_θ) per position from the registered forward_kl, exactly 0 at masked positions. (B, T).

    The target is formed block by block inside the chunked driver, so no interpolated (B, T, V) logits
    tensor is ever materialized. t ∈ {0, 1} use one model's logits only (0·(−inf) would give NaN).
    """
    if x.logits_teacher is None:
        raise ValueError("taid needs the full teacher logits (the interpolation is over all V logits)")
    fkl = DIVERGENCES.entry("forward_kl")
    dp = fkl.params(chunk_size=p.chunk_size)
    t, tau = p.t, p.temperature

    def kernel(z_s: torch.Tensor, z_t: torch.Tensor) -> torch.Tensor:
        z_s_const = upcast(z_s).detach()
        if t == 0.0:
            target = z_s_const
        elif t == 1.0:
            target = upcast(z_t)
        else:
            target = (1.0 - t) * z_s_const + t * upcast(z_t)
        return fkl.fn.dense(log_softmax_t(z_s, tau), log_softmax_t(target, tau), dp)  # KL(p_t ‖ q_θ)

    mask = x.mask.bool()
    views = (guard_masked_rows(x.logits, mask), guard_masked_rows(x.logits_teacher, mask))
    d = chunked_rowwise(kernel, views, p.chunk_size)
    return torch.where(mask, d, torch.zeros_like(d))


@DISTILL_LOSSES.register("taid", params=TAIDParams)
def taid_loss(x: DistillInputs, p: TAIDParams) -> LossOut:
    """ℓ_t = KL(p_t‖q_θ),  p_t = softmax(((1 − t)·sg(z_S) + t·z_T)/τ)   (TAID arXiv:2501.16937 §3).

    Args: x.logits (B, T, V) student, with grad; x.logits_teacher (B, T, V) (the top-k form is not
        supported); x.mask (B, T) bool; x.weights (B, T) optional; p.t from TAIDSchedule.
    Returns: LossOut(loss (), {divergence: token mean of KL(p_t‖q_θ)}).
    """
    return distill_loss_from_per_token(taid_per_token(x, p), x, p)


def taid_topk_target(logits: torch.Tensor, topk_logq: torch.Tensor, topk_index: torch.Tensor, t: float, *,
                     tail_min: float = 1e-12) -> torch.Tensor:
    """TAID's target p_t over the whole vocabulary when the teacher sends only its top-k log-probs:
        z_T[v] = log q_T(v) for the k ids, log(tail/(V − k)) elsewhere (the tail mass spread evenly),
        p_t = softmax((1 − t)·sg(log π_θ) + t·z_T).
    Exact when k = V. Args: logits (..., V) student; topk_logq, topk_index (..., k). Returns (..., V) log p_t
    in fp32, detached (TAID's target is a constant for the gradient)."""
    vocab, k = logits.shape[-1], topk_logq.shape[-1]
    logq_k = upcast(topk_logq).detach()
    if k >= vocab:
        teacher = torch.empty_like(upcast(logits)).scatter(-1, topk_index, logq_k)
    else:
        tail = (1.0 - logq_k.logsumexp(-1, keepdim=True).exp()).clamp(min=tail_min)
        teacher = (tail.log() - math.log(vocab - k)).expand(*logq_k.shape[:-1], vocab).clone()
        teacher = teacher.scatter(-1, topk_index, logq_k)
    student = upcast(logits).detach().log_softmax(-1)
    if t == 0.0:
        return student
    mixed = teacher if t == 1.0 else (1.0 - t) * student + t * teacher
    return mixed.log_softmax(-1)


def _sigmoid(m: float) -> float:
    """σ(m) without overflow for large |m| (δ is unbounded when the previous loss is near 0)."""
    if m >= 0.0:
        return 1.0 / (1.0 + math.exp(-m))
    e = math.exp(m)
    return e / (1.0 + e)


class TAIDSchedule:
    """The adaptive t of TAID (Algorithm 1): stateful, so it lives in the loop, not in the loss.

    Usage per optimizer step: ``out = taid_loss(x, TAIDParams(t=sched.t)); sched.update(float(out.loss))``.
    The first update only records the loss (t stays t_start), as in the reference code.
    """

    def __init__(
        self,
        *,
        total_steps: int,
        t_start: float = 0.4,
        t_end: float = 1.0,
        alpha: float = 5e-4,
        beta: float = 0.99,
        adaptive: bool = True,
        eps: float = 1e-15,  # guards δ = (L_prev − L)/L_prev when L_prev = 0
    ) -> None:
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        if not (0.0 <= t_start < 1.0 and 0.0 < t_end <= 1.0 and t_start <= t_end):
            raise ValueError(f"need 0 <= t_start < 1, 0 < t_end <= 1, t_start <= t_end; got {t_start}, {t_end}")
        if not 0.0 <= alpha <= 1.0 or not 0.0 <= beta < 1.0:
            raise ValueError(f"need alpha in [0, 1] and beta in [0, 1); got {alpha}, {beta}")
        self.total_steps, self.t_start, self.t_end = total_steps, t_start, t_end
        self.alpha, self.beta, self.adaptive, self.eps = alpha, beta, adaptive, eps
        self.t = t_start
        self.momentum = 0.0
        self.prev_loss: float | None = None
        self.calls = 0

    def linear_t(self, step: int) -> float:
        """t_lin = t_start + (t_end − t_start)·step/total_steps."""
        return self.t_start + (self.t_end - self.t_start) * step / self.total_steps

    def update(self, loss_value: float, step: int | None = None) -> float:
        """Record this step's loss; return the t for the next step.

        Args: loss_value the loss at the current t (a Python float); step the optimizer step (default:
        the number of earlier update calls). Returns: the new t ∈ [t_start, t_end].
        """
        step = self.calls if step is None else step
        self.calls += 1
        if self.prev_loss is None:
            self.prev_loss = loss_value
            return self.t
        delta = (self.prev_loss - loss_value) / (self.prev_loss + self.eps)
        self.momentum = self.beta * self.momentum + (1.0 - self.beta) * delta
        t_lin = self.linear_t(step)
        if self.adaptive:
            step_up = self.alpha * _sigmoid(self.momentum) * (1.0 - self.t)
            self.t = min(self.t_end, max(t_lin, self.t + step_up))
        else:
            self.t = min(self.t_end, t_lin)
        self.prev_loss = loss_value
        return self.t

    def state_dict(self) -> dict[str, float | int | None]:
        return {"t": self.t, "momentum": self.momentum, "prev_loss": self.prev_loss, "calls": self.calls}

    def load_state_dict(self, state: dict[str, float | int | None]) -> None:
        self.t, self.momentum = float(state["t"]), float(state["momentum"])  # type: ignore[arg-type]
        self.prev_loss = None if state["prev_loss"] is None else float(state["prev_loss"])  # type: ignore[arg-type]
        self.calls = int(state["calls"])  # type: ignore[arg-type]
