"""Online RL algorithms as recipe entries (GRPO, Dr. GRPO, DAPO, GSPO, RLOO, REINFORCE++) and their loss.

An algorithm = an advantage estimator (advantages/) + a policy loss (POLICY_LOSSES) + anchor terms
(anchor_term.py) + an optional entropy bonus, all on one rollout batch:

    L = L_policy(logp, logp_old, A, mask) + Σ_a coef_a(step)·aggregate(m_a ⊙ surrogate_a, mask) − c_H·H

Recipes pick one by name (``algorithm: {name: grpo, group_size: 8, clip_high: 0.28}``); each name is the
same ``OnlineRLParams`` with the defaults of its paper:
  grpo          group-normalised A (std), PPO clip, token_mean          arXiv:2402.03300
  dr_grpo       A = R − mean (no std), seq_mean_token_sum aggregation   arXiv:2503.20783
  dapo          clip-higher 0.28, token_mean, dynamic sampling, overlong shaping  arXiv:2503.14476
  gspo          sequence-level ratio (GSPO clip 3e-4/4e-4)              arXiv:2507.18071
  rloo          leave-one-out baseline, REINFORCE-style (PPO clip at ratio 1) arXiv:2402.14740
  reinforce_pp  REINFORCE++: global batch-normalised returns            arXiv:2501.03262
  ppo           GAE with a learned critic (value model), whitened A    arXiv:1707.06347, arXiv:2203.02155
  distill       no reward term: the teacher anchor(s) alone (on-policy KD / GKD with λ)  arXiv:2306.13649
Deviations: with one optimizer step per rollout batch the ratio is exactly 1 (logp_old = logp.detach(),
as TRL's GRPO with num_iterations = 1), so the clip bounds matter only for ``updates_per_step`` > 1.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

import torch

from alignrl.divergences.topk import topk_full
from alignrl.objectives.anchor_term import anchor_token_terms
from alignrl.objectives.entropy import EntropyParams, entropy_bonus
from alignrl.objectives.taid import taid_topk_target
from alignrl.ops import AGGREGATION_MODES, aggregate, masked_mean
from alignrl.ops.reductions import AggregationMode
from alignrl.registry import ADVANTAGES, DIVERGENCES, POLICY_LOSSES, TRAIN_LOSSES
from alignrl.types import LossOut


@dataclass(frozen=True, kw_only=True, slots=True)
class OnlineRLParams:
    group_size: int = 8
    """Samples per prompt (G); train.batch_size must be a multiple of it."""
    advantage: Literal["grpo", "rloo", "reinforce_pp", "baseline", "gae"] = "grpo"
    """ADVANTAGES entry; gae trains a critic (a value-model learner group) beside the policy."""
    scale_std: bool = True
    """grpo: divide by the group std (False: Dr. GRPO)."""
    std_scope: Literal["group", "batch"] = "group"
    """grpo: whose std divides."""
    policy_loss: Literal["ppo", "gspo", "reinforce", "none"] = "ppo"
    """POLICY_LOSSES entry; none: no reward term, the anchors alone train the policy (distillation)."""
    clip_low: float = 0.2
    clip_high: float = 0.2
    """ε_high; DAPO's clip-higher uses 0.28."""
    dual_clip: float | None = None
    loss_agg: AggregationMode = "token_mean"
    entropy_coef: float = 0.0
    """c_H of the entropy bonus (0: off; the bonus needs the full logits, computed chunked)."""
    tis_cap: float | None = None
    """Truncated importance sampling on the rollout/learner log-prob mismatch: w = min(π_learner/π_rollout, C).
    On a stale batch (rollout.max_staleness) it also makes the update decoupled PPO: the clip is taken around the
    learner's current weights (π_prox) and w carries the correction from the weights that sampled."""
    tis_level: Literal["token", "sequence"] = "token"
    """TIS weights per token, or one per sequence (the product of its token ratios, truncated)."""
    dynamic_sampling: bool = False
    """DAPO: drop groups whose rewards are all equal (zero advantage) before the update."""
    overlong_buffer: int = 0
    """DAPO soft overlong punishment: completions within this many tokens of max_new_tokens lose reward
    linearly, down to −overlong_penalty at the limit (0: off)."""
    overlong_penalty: float = 1.0
    gamma: float = 1.0
    """gae / reinforce_pp: discount."""
    lam: float = 0.95
    """gae: λ."""
    whiten: bool = False
    """gae / rloo: whiten advantages over the batch."""
    value_clip: float | None = 0.2
    """gae: ε_v of the clipped value loss (objectives/value.py)."""
    critic_lr: float | None = None
    """gae: the critic's learning rate (None: learner.lr)."""
    updates_per_step: int = 1
    """Optimizer steps per rollout batch (each on batch_size / updates_per_step sequences); > 1 makes the
    policy off-policy for later updates and the clip active."""

    def __post_init__(self) -> None:
        if self.group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {self.group_size}")
        if self.advantage in ("grpo", "rloo") and self.group_size < 2:
            raise ValueError(f"group_size must be >= 2 for the {self.advantage} advantage, got {self.group_size}")
        if self.loss_agg not in AGGREGATION_MODES:
            raise ValueError(f"loss_agg must be one of {', '.join(AGGREGATION_MODES)}, got {self.loss_agg!r}")
        if self.tis_cap is not None and self.tis_cap < 1.0:
            raise ValueError(f"tis_cap must be >= 1 (or null), got {self.tis_cap}")
        if self.overlong_buffer < 0 or self.updates_per_step < 1 or self.entropy_coef < 0:
            raise ValueError("overlong_buffer must be >= 0, updates_per_step >= 1, entropy_coef >= 0")


@dataclass(frozen=True, kw_only=True, slots=True)
class DrGRPOParams(OnlineRLParams):
    scale_std: bool = False
    loss_agg: AggregationMode = "seq_mean_token_sum"


@dataclass(frozen=True, kw_only=True, slots=True)
class DAPOParams(OnlineRLParams):
    clip_high: float = 0.28
    dynamic_sampling: bool = True
    overlong_buffer: int = 4


@dataclass(frozen=True, kw_only=True, slots=True)
class GSPOAlgoParams(OnlineRLParams):
    policy_loss: Literal["ppo", "gspo", "reinforce"] = "gspo"
    clip_low: float = 3e-4
    clip_high: float = 4e-4
    loss_agg: AggregationMode = "seq_mean_token_mean"


@dataclass(frozen=True, kw_only=True, slots=True)
class RLOOAlgoParams(OnlineRLParams):
    group_size: int = 4
    advantage: Literal["grpo", "rloo", "reinforce_pp", "baseline", "gae"] = "rloo"


@dataclass(frozen=True, kw_only=True, slots=True)
class ReinforcePPAlgoParams(OnlineRLParams):
    group_size: int = 4
    advantage: Literal["grpo", "rloo", "reinforce_pp", "baseline", "gae"] = "reinforce_pp"


@dataclass(frozen=True, kw_only=True, slots=True)
class PPOAlgoParams(OnlineRLParams):
    group_size: int = 1
    advantage: Literal["grpo", "rloo", "reinforce_pp", "baseline", "gae"] = "gae"
    whiten: bool = True


@dataclass(frozen=True, kw_only=True, slots=True)
class DistillAlgoParams(OnlineRLParams):
    """On-policy / mixed distillation (GKD, MiniLLM-style RKL): the policy loss is off and the teacher
    anchor(s) are the whole objective; rewards are still computed and logged (the student's accuracy)."""

    group_size: int = 1
    advantage: Literal["grpo", "rloo", "reinforce_pp", "baseline", "gae"] = "baseline"
    policy_loss: Literal["ppo", "gspo", "reinforce", "none"] = "none"
    lmbda: float = 1.0
    """GKD's λ: the probability that a step trains on student samples; otherwise on the dataset's gold
    completions (supervised KD). 1: on-policy, 0: offline."""

    def __post_init__(self) -> None:
        OnlineRLParams.__post_init__(self)
        if not 0.0 <= self.lmbda <= 1.0:
            raise ValueError(f"lmbda must be in [0, 1], got {self.lmbda}")


def pick_params(params_cls: type | None, source: Any, **extra: Any) -> Any:
    """An entry's Params built from the same-named fields of ``source`` (None if the entry has no Params)."""
    if params_cls is None:
        return None
    names = {f.name for f in fields(params_cls)}
    kw = {f.name: getattr(source, f.name) for f in fields(source) if f.name in names}
    return params_cls(**{**kw, **{k: v for k, v in extra.items() if k in names}})


@dataclass(frozen=True, slots=True)
class AnchorTerm:
    """One anchor term of this step: its name, divergence, estimator and coefficient (placement: loss)."""

    name: str
    divergence: str
    estimator: str
    coef: float
    divergence_params: Any = None
    taid_t: float | None = None
    """estimator topk only: the anchor is TAID's interpolation p_t of the policy (stop-gradient) and the
    teacher at this t (objectives/taid.py), not the teacher itself."""


def online_rl_loss(
    logp: torch.Tensor,
    mask: torch.Tensor,
    rows: dict[str, torch.Tensor],
    p: OnlineRLParams,
    anchors: tuple[AnchorTerm, ...] = (),
    *,
    logits: torch.Tensor | None = None,
    global_denominator: torch.Tensor | float | None = None,
) -> LossOut:
    """L = L_policy + Σ_a coef_a·aggregate(m_a ⊙ surrogate_a) − c_H·H (module docstring).

    Args: logp (B, T) log π_θ of the sampled tokens, with grad; mask (B, T) bool response tokens; rows:
        ``advantages`` (B, T), ``logp_old`` (B, T) (π_old; logp.detach() for on-policy), optional ``tis``
        (B, T) weights, and per loss-placed anchor ``anchor_logp/<name>`` (B, T) with optional
        ``anchor_mask/<name>`` (B, T) float weights (estimator ``full``: ``anchor_logits/<name>`` (B, T, V));
        logits (B, T, V) only when entropy_coef > 0 or an anchor is ``full``.
    Returns: LossOut(loss, policy metrics + ``anchor/<name>`` (token-mean D estimate over its mask) +
        ``entropy``).
    """
    if p.policy_loss == "none":
        loss, metrics = logp.new_zeros(()), {}
    else:
        entry = POLICY_LOSSES.entry(p.policy_loss)
        out = entry.fn(logp, rows["logp_old"], rows["advantages"], mask, pick_params(entry.params, p),
                       weights=rows.get("tis"), global_denominator=global_denominator)
        loss, metrics = out.loss, dict(out.metrics)
    for a in anchors:
        if a.estimator in ("full", "topk"):
            if logits is None:
                raise ValueError(f"online_rl_loss: estimator {a.estimator} needs the policy logits")
            if a.estimator == "full":
                surrogate = full_anchor_divergence(logits, rows[f"anchor_logits/{a.name}"], a.divergence,
                                                   a.divergence_params)
            elif a.taid_t is not None:
                surrogate = taid_anchor_divergence(logits, rows[f"anchor_topk_logp/{a.name}"],
                                                   rows[f"anchor_topk_index/{a.name}"], a.taid_t, a.divergence,
                                                   a.divergence_params)
            else:
                surrogate = topk_anchor_divergence(logits, rows[f"anchor_topk_logp/{a.name}"],
                                                   rows[f"anchor_topk_index/{a.name}"], a.divergence,
                                                   a.divergence_params)
            value = surrogate.detach()
        else:
            value, surrogate = anchor_token_terms(logp, rows[f"anchor_logp/{a.name}"], divergence=a.divergence,
                                                  estimator=a.estimator, params=a.divergence_params)
        weight = rows.get(f"anchor_mask/{a.name}")
        m = mask.bool() if weight is None else mask.bool() & (weight != 0)
        weighted = surrogate if weight is None else weight.to(surrogate.dtype) * surrogate
        term = torch.where(m, weighted, torch.zeros_like(surrogate))
        loss = loss + a.coef * aggregate(term, mask, p.loss_agg, global_denominator)
        metrics[f"anchor/{a.name}"] = masked_mean(value, m)
        metrics[f"anchor/{a.name}/mask_frac"] = masked_mean(m.to(value.dtype), mask)
    if p.entropy_coef > 0:
        if logits is None:
            raise ValueError("online_rl_loss: entropy_coef > 0 needs logits")
        ent = entropy_bonus(logits, mask, EntropyParams(coef=p.entropy_coef, loss_agg=p.loss_agg),
                            global_denominator=global_denominator)
        loss = loss + ent.loss
        metrics.update(ent.metrics)
    return LossOut(loss, metrics)


def full_anchor_divergence(logits: torch.Tensor, anchor_logits: torch.Tensor, divergence: str,
                           params: Any = None) -> torch.Tensor:
    """D(softmax(z_{t−1}) ‖ softmax(z^anchor_{t−1})) per token t (the distributions token t was drawn from),
    exact over the vocabulary (chunked full form); 0 at t = 0. (B, T, V) x2 -> (B, T), differentiable in logits."""
    entry = DIVERGENCES.entry(divergence)
    p = params if params is not None else entry.params()
    d = entry.fn.full(logits[:, :-1], anchor_logits[:, :-1].detach(), p)
    return torch.nn.functional.pad(d, (1, 0), value=0.0)


def topk_anchor_divergence(logits: torch.Tensor, topk_logq: torch.Tensor, topk_index: torch.Tensor,
                           divergence: str, params: Any = None) -> torch.Tensor:
    """D(p̃_{t} ‖ q̃_{t}) per token t on the anchor's top-k tokens plus a tail bucket (divergences/topk.py),
    p from the policy logits z_{t−1}; topk_logq / topk_index (B, T, k) aligned to tokens (position t: the
    distribution token t was drawn from, as ScorerWorker.topk_logprobs sends them); 0 at t = 0.
    Equals ``full_anchor_divergence`` when k = V. Differentiable in logits."""
    p = params if params is not None else DIVERGENCES.entry(divergence).params()
    d = topk_full(divergence, logits[:, :-1], topk_logq[:, 1:].to(logits.dtype).detach(), topk_index[:, 1:], p)
    return torch.nn.functional.pad(d, (1, 0), value=0.0)


def taid_anchor_divergence(logits: torch.Tensor, topk_logq: torch.Tensor, topk_index: torch.Tensor, t: float,
                           divergence: str, params: Any = None) -> torch.Tensor:
    """D(π_θ,t ‖ p_t,t) per token t, p_t = softmax((1 − t)·sg(log π_θ) + t·z_teacher) the TAID target built
    from the teacher's top-k log-probs (``taid_topk_target``; Shing et al. 2025, arXiv:2501.16937; with
    divergence forward_kl this is the paper's KL(p_t ‖ π_θ)); aligned like ``topk_anchor_divergence``;
    0 at t = 0. Differentiable in logits."""
    p = params if params is not None else DIVERGENCES.entry(divergence).params()
    target = taid_topk_target(logits[:, :-1], topk_logq[:, 1:], topk_index[:, 1:], t)
    d = DIVERGENCES.entry(divergence).fn.full(logits[:, :-1], target, p)
    return torch.nn.functional.pad(d, (1, 0), value=0.0)


def advantage_params(p: OnlineRLParams) -> Any:
    """The chosen ADVANTAGES entry's Params, filled from the algorithm's same-named knobs."""
    return pick_params(ADVANTAGES.entry(p.advantage).params, p)


ALGORITHMS = {
    "grpo": OnlineRLParams, "dr_grpo": DrGRPOParams, "dapo": DAPOParams, "gspo": GSPOAlgoParams,
    "rloo": RLOOAlgoParams, "reinforce_pp": ReinforcePPAlgoParams, "ppo": PPOAlgoParams,
    "distill": DistillAlgoParams,
}
for _name, _cls in ALGORITHMS.items():
    TRAIN_LOSSES.register(_name, params=_cls)(online_rl_loss)
