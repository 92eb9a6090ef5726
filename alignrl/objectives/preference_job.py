"""The ``preference`` training objective: one or more registered preference losses (DPO family) on a batch of
pairs, plus an optional NLL on the chosen responses, against a reference the learner hosts.

L = Σ_i w_i · loss_i(x) + λ_nll · mean_pairs(−log π_θ(y_w) / |y_w|)
x carries the policy's and the reference's sequence sums (and, for TDPO, per-token KL to the reference).
The NLL term is RPO's (Pang et al. 2024, "Iterative Reasoning Preference Optimization", arXiv:2404.19733), TRL's
``rpo_alpha``. Reference kinds: frozen (the start), ema (θ_ref ← β·θ_ref + (1−β)·θ every step) and tr_dpo
(θ_ref ← α·θ + (1−α)·θ_ref every τ steps; Gorbatovski et al. 2024, arXiv:2404.09656).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from alignrl.objectives.preference_base import PreferenceInputs
from alignrl.registry import PREFERENCE_LOSSES, TRAIN_LOSSES, Component
from alignrl.types import LossOut

OFFLINE = ("dpo", "cdpo", "robust_dpo", "ipo", "hinge", "f_dpo", "h_dpo", "simpo", "tdpo1", "tdpo2", "dpkd")
"""Losses an offline job can feed: policy and reference sums (and, for TDPO, per-token KL to the reference; for
DPKD, the teacher's sums: the reference must be ``model``)."""
TOKEN_LEVEL = ("tdpo1", "tdpo2")  # need the reference's full distributions


@dataclass(frozen=True, kw_only=True, slots=True)
class WeightedPreferenceLoss:
    loss: Component = field(default=Component("dpo", None), metadata={"registry": PREFERENCE_LOSSES})
    """Any registered preference loss with its parameters, e.g. ``{name: ipo, beta: 0.1}``."""
    weight: float = 1.0


@dataclass(frozen=True, kw_only=True, slots=True)
class PreferenceJobParams:
    loss: Component = field(default=Component("dpo", None), metadata={"registry": PREFERENCE_LOSSES})
    """The preference loss: dpo, cdpo, robust_dpo, ipo, hinge, f_dpo, h_dpo, tdpo1, tdpo2, simpo, ..."""
    extra_losses: tuple[WeightedPreferenceLoss, ...] = ()
    """More losses added with their weights (``loss`` has weight 1)."""
    nll_weight: float = 0.0
    """λ_nll ≥ 0: RPO's length-normalized NLL on the chosen responses (TRL's rpo_alpha)."""
    reference: Literal["frozen", "ema", "tr_dpo", "previous_round", "model"] = "frozen"
    """frozen: the starting policy; ema: an EMA of the policy (``ref_decay``); tr_dpo: soft sync every
    ``ref_sync_steps`` with weight ``ref_alpha`` (α = 1: hard copy); previous_round: the policy as it was when
    the current round began (iterative DPO, DNO/INPO); model: another model, fixed (``reference_paths``: one
    folder, e.g. a teacher for DPKD, or several averaged into a soup with ``reference_weights``), scored once per
    round of pairs by a ScorerWorker."""
    reference_paths: tuple[str, ...] = ()
    reference_weights: tuple[float, ...] | None = None
    ref_decay: float = 0.99
    ref_alpha: float = 0.6
    ref_sync_steps: int = 64
    shared_prompt: bool = True
    """Score each pair as one row with its prompt computed once for both responses, and vocabulary logits only
    where a response token is predicted (``data/shared_prompt``; exact, 1.3-2x faster when prompts are long).
    Used when the reference is cached (offline, frozen, sequence-level losses); other references score one row
    per response."""
    rounds: int = 1
    """Iterations of train.steps steps each; with ``online``, each round trains on pairs sampled from the policy
    as it was when the round began."""
    online: bool = False
    """Iterative/online DPO: data.train holds prompts (a task); every round the rollout workers draw
    ``samples_per_prompt`` answers for ``prompts_per_round`` prompts, the recipe's rewards score them, and each
    prompt's best and worst answer form a pair when their rewards differ by more than ``pair_margin``."""
    samples_per_prompt: int = 4
    prompts_per_round: int = 512
    pair_margin: float = 0.0

    def __post_init__(self) -> None:
        if (self.reference == "model") != bool(self.reference_paths):
            raise ValueError("reference: model needs reference_paths (a model folder, or several for a soup), and "
                             "reference_paths needs reference: model")
        if self.reference_weights is not None and len(self.reference_weights) != len(self.reference_paths):
            raise ValueError(f"reference_weights has {len(self.reference_weights)} entries for "
                             f"{len(self.reference_paths)} reference_paths")
        if self.nll_weight < 0:
            raise ValueError(f"nll_weight must be >= 0, got {self.nll_weight}")
        if self.rounds < 1 or self.samples_per_prompt < 2 or self.prompts_per_round < 1:
            raise ValueError("rounds and prompts_per_round must be >= 1 and samples_per_prompt >= 2")
        if self.pair_margin < 0:
            raise ValueError(f"pair_margin must be >= 0, got {self.pair_margin}")


def preference_params(c: Component):
    """A loss component's params (its defaults when the recipe gave only the name)."""
    return c.params if c.params is not None else PREFERENCE_LOSSES.entry(c.name).params()


@TRAIN_LOSSES.register("preference", params=PreferenceJobParams)
def preference_job_loss(x: PreferenceInputs, p: PreferenceJobParams, nll: torch.Tensor | None = None) -> LossOut:
    """L = Σ_i w_i·loss_i(x) + λ_nll·nll, metrics of the first loss plus ``loss/<name>`` per loss.

    Args: x the pairs' sums (see preference_base); nll () the mean length-normalized NLL of the chosen responses
    (needed when nll_weight > 0). Ref: arXiv:2305.18290 (DPO) and each loss's module; arXiv:2404.19733 (RPO).
    """
    first = PREFERENCE_LOSSES.get(p.loss.name)(x, preference_params(p.loss))
    total, metrics = first.loss, {**first.metrics, f"loss/{p.loss.name}": first.loss.detach()}
    for extra in p.extra_losses:
        out = PREFERENCE_LOSSES.get(extra.loss.name)(x, preference_params(extra.loss))
        total = total + extra.weight * out.loss
        metrics[f"loss/{extra.loss.name}"] = out.loss.detach()
    if p.nll_weight:
        if nll is None:
            raise ValueError("preference: nll_weight > 0 needs the chosen responses' NLL")
        total = total + p.nll_weight * nll
        metrics["nll_chosen"] = nll.detach()
    return LossOut(total, metrics)
