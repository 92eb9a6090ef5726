"""Reward-model training: the Bradley-Terry pairwise loss, and UP-RLHF's diversity term for LoRA ensembles.

Bradley-Terry:  L = −mean log σ(r(x, y_w) − r(x, y_l) − m) + c · mean((r(x, y_w) + r(x, y_l))²)
  m: an optional per-pair margin (Llama 2's margin loss; TRL's ``margin`` column); c: TRL RewardTrainer's
  ``center_rewards_coefficient`` (Eisenstein et al. 2023), which pins the scores' mean near 0.
Diversity (UP-RLHF):  L_div = −λ · Σ_layers ‖[Â_1; …; Â_K]‖_*, the nuclear norm of one layer's K LoRA A matrices
  stacked row-wise (K·r × d), Â_k = A_k / ‖A_k‖_F: maximizing it spreads the members' down-projections over
  different directions. Deviation: the per-member normalization (the paper stacks raw A_k, whose nuclear norm also
  grows with their scale, so the term could be maximized by inflating the adapters instead of diversifying them).
Ref: Bradley & Terry 1952; Ouyang et al. 2022 (InstructGPT RM); Touvron et al. 2023 (margin);
Zhai et al. 2023, "Uncertainty-Penalized RLHF with Diverse Reward LoRA Ensembles", arXiv:2401.00243.
Deviations: none.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from alignrl.registry import TRAIN_LOSSES
from alignrl.types import LossOut


@dataclass(frozen=True, kw_only=True, slots=True)
class BradleyTerryParams:
    center_rewards_coefficient: float = 0.0
    """c ≥ 0: weight of mean((r_w + r_l)²), which keeps scores centred (TRL's knob of the same name)."""
    members: int = 1
    """Train this many reward models, exported to ``runs/NAME/member<k>/export``: with ``learner.lora``, K LoRA
    members on one frozen backbone trained together (UP-RLHF); without, K full models one after another, member k
    with seed + k (Coste et al.). A loop knob."""
    diversity: float = 0.0
    """λ_div ≥ 0 of the LoRA ensemble's nuclear-norm term (needs ``learner.lora`` and members > 1)."""

    def __post_init__(self) -> None:
        if self.members < 1:
            raise ValueError(f"members must be >= 1, got {self.members}")
        if self.diversity < 0:
            raise ValueError(f"diversity must be >= 0, got {self.diversity}")
        if self.center_rewards_coefficient < 0:
            raise ValueError(f"center_rewards_coefficient must be >= 0, got {self.center_rewards_coefficient}")


@TRAIN_LOSSES.register("bradley_terry", params=BradleyTerryParams)
def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor, p: BradleyTerryParams,
                       margin: torch.Tensor | None = None) -> LossOut:
    """L = −mean log σ(r_w − r_l − m) + c·mean((r_w + r_l)²).

    Args: chosen, rejected (B,) scalar rewards of the preferred / dispreferred completions; margin (B,) or None.
    Returns: LossOut(loss, {accuracy: share with r_w > r_l, margin: mean r_w − r_l, chosen/rejected: means}).
    Ref: Bradley & Terry 1952; InstructGPT (arXiv:2203.02155).
    """
    diff = chosen - rejected
    loss = -F.logsigmoid(diff - (margin if margin is not None else 0.0)).mean()
    if p.center_rewards_coefficient:
        loss = loss + p.center_rewards_coefficient * ((chosen + rejected) ** 2).mean()
    metrics = {"accuracy": (diff > 0).float().mean(), "margin": diff.mean(), "chosen": chosen.mean(),
               "rejected": rejected.mean()}
    return LossOut(loss, {k: v.detach() for k, v in metrics.items()})


def lora_nuclear_diversity(a_matrices: list[torch.Tensor]) -> torch.Tensor:
    """‖[Â_1; …; Â_K]‖_* with Â_k = A_k/‖A_k‖_F: the nuclear norm (sum of singular values) of one layer's K LoRA A
    matrices, each (r, d), scaled to unit Frobenius norm and stacked to (K·r, d): √K when all members are the same
    rank-one matrix, up to K·√r when every row of every member is orthogonal to the others and each member's
    singular values are equal. The training loss subtracts λ times its sum over layers. Ref: arXiv:2401.00243 (see the module docstring for the scaling)."""
    if not a_matrices:
        raise ValueError("need at least one LoRA A matrix")
    stacked = torch.cat([a.float() / torch.linalg.matrix_norm(a.float()).clamp_min(1e-12) for a in a_matrices], dim=0)
    return torch.linalg.matrix_norm(stacked, ord="nuc")
