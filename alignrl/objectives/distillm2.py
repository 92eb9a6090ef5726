"""DistiLLM-2: contrastive distillation, skew KL on teacher responses and skew reverse KL on student ones.

Each row of the batch is a response to a prompt, generated either by the teacher (y_T) or by the
student (y_S), flagged by ``DistillInputs.from_student``:

    ℓ_t = (2 − β)·SKL_α₁(p_T, q_θ) = (2 − β)·KL(p_T ‖ α₁·p_T + (1−α₁)·q_θ)   on teacher rows
    ℓ_t =       β·SRKL_α₂(p_T, q_θ) =     β·KL(q_θ ‖ (1−α₂)·p_T + α₂·q_θ)   on student rows
    L   = aggregate(w_t·ℓ_t, mask, loss_agg)

SKL on y_T raises the student's likelihood of teacher responses (mass-covering); SRKL on y_S pushes down
what the student over-generates (mode-seeking): the "contrastive" pairing. Regenerating y_T and y_S each
epoch, the curriculum on α and the β schedule are the loop's (data regime), not this loss's.
Refs: Ko et al. 2025, "DistiLLM-2: A Contrastive Approach Boosts the Distillation of LLMs", ICML 2025,
arXiv:2503.07067 §3 (verify eq. numbers); skew divergences from DistiLLM, arXiv:2402.03898 §3.
Deviations from the paper / released code (verify against github.com/jongwooko/distillm-2):
(1) α₁, α₂ are fixed parameters; the released code's per-sequence adaptive α (clipped to [0.01, α]) is
    left to a later change. (2) The released SRKL mixes in sg(q_θ) (no gradient through the mixture);
    the divergences registry's skew_reverse_kl keeps that gradient (DistiLLM-1's code), and is used as is.
(3) Normalization: the released loss is mean_pairs[(2 − β)·mean_t SKL(y_T) + β·mean_t SRKL(y_S)]; with
    ``loss_agg="seq_mean_token_mean"`` on a batch of B teacher rows and B student rows this loss is exactly
    ½ of that (a mean over 2B rows). ``skew_kl`` and ``skew_rkl`` called on the two halves and added give
    the released scale and compute each divergence on its own rows only (this loss computes both on all
    rows, 2 vocabulary passes, and keeps the one each row needs).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from alignrl.objectives.distill_base import (
    DistillInputs,
    DistillParams,
    check_distill_params,
    divergence_per_token,
    reduce_tokens,
)
from alignrl.ops import masked_mean
from alignrl.registry import DISTILL_LOSSES
from alignrl.types import LossOut


@dataclass(frozen=True, kw_only=True, slots=True)
class DistiLLM2Params(DistillParams):
    alpha_teacher: float = 0.1
    """α₁ ∈ [0, 1) of the skew KL on teacher responses (released code: base_alpha_1 = 0.1)."""
    alpha_student: float = 0.1
    """α₂ ∈ [0, 1) of the skew reverse KL on student responses (released code: base_alpha_2 = 0.1)."""
    beta: float = 1.0
    """β ∈ [0, 2]: weight of the student-row term; teacher rows get 2 − β (released code: 1, or 1 → 1.5)."""

    def __post_init__(self) -> None:
        check_distill_params(self)
        for name in ("alpha_teacher", "alpha_student"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"distillm2 {name} must be in [0, 1), got {getattr(self, name)}")
        if not 0.0 <= self.beta <= 2.0:
            raise ValueError(f"distillm2 beta must be in [0, 2], got {self.beta}")


@DISTILL_LOSSES.register("distillm2", params=DistiLLM2Params)
def distillm2_loss(x: DistillInputs, p: DistiLLM2Params) -> LossOut:
    """ℓ_t = (2 − β)·KL(p_T ‖ α₁p_T + (1−α₁)q_θ) on y_T rows, β·KL(q_θ ‖ (1−α₂)p_T + α₂q_θ) on y_S rows.

    Args: x.logits (B, T, V) student, with grad; x.logits_teacher (B, T, V) or the top-k pair;
        x.mask (B, T) bool; x.from_student (B,) bool, required (True: y_S, False: y_T);
        x.weights (B, T) optional.
    Returns: LossOut(loss (), {divergence: token mean of the unweighted ℓ (SKL or SRKL per row),
        skew_kl_teacher: token mean of SKL over teacher rows, skew_rkl_student: of SRKL over student rows}).
    Ref: arXiv:2503.07067 §3.
    """
    if x.from_student is None:
        raise ValueError("distillm2 needs DistillInputs.from_student (which rows are student responses)")
    mask = x.mask.bool()
    student_row = x.from_student.bool().unsqueeze(-1)  # (B, 1)
    on_teacher, on_student = mask & ~student_row, mask & student_row
    skl = divergence_per_token("skew_kl", dataclasses.replace(x, mask=on_teacher), p, alpha=p.alpha_teacher)
    srkl = divergence_per_token("skew_reverse_kl", dataclasses.replace(x, mask=on_student), p, alpha=p.alpha_student)
    per_token = skl + srkl  # disjoint supports: each is exactly 0 off its rows
    coef = torch.where(student_row, per_token.new_tensor(p.beta), per_token.new_tensor(2.0 - p.beta))  # (B, 1)
    metrics = {
        "divergence": masked_mean(per_token.detach(), mask),
        "skew_kl_teacher": masked_mean(skl.detach(), on_teacher),
        "skew_rkl_student": masked_mean(srkl.detach(), on_student),
    }
    return LossOut(reduce_tokens(per_token * coef, x, p), metrics)
