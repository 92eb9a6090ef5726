"""Anchors whose weights follow the policy (EMA, Elastic Reset), hosted beside the learner's model.

Why here and not in a ScorerWorker: an EMA changes after every optimizer step from the policy's weights,
which live in the learner. Keeping the EMA copy on each learner rank makes the update a local in-place
lerp (no weight transfer per step) and its log-probs one extra no-grad forward on the rank's own shard.
Cost: one more model copy per rank (not sharded: ZeRO-3 is refused for these anchors at recipe load).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch

from alignrl.ops import token_logprobs
from alignrl.registry import ANCHORS
from alignrl.types import RolloutBatch


@dataclass(frozen=True, slots=True)
class MovingAnchorSpec:
    name: str
    rule: str          # ANCHORS entry: "ema" or "elastic_reset"
    params: Any        # that entry's Params
    full: bool = False  # the loss needs the anchor's logits (exact full-vocabulary divergence), not log-probs


class MovingAnchors:
    """Frozen copies of the policy updated by ANCHORS rules after each optimizer step."""

    def __init__(self, policy: torch.nn.Module, specs: list[MovingAnchorSpec]) -> None:
        self.specs = specs
        self.policy = policy
        self.models = {s.name: copy.deepcopy(policy).eval().requires_grad_(False) for s in specs}
        needs_init = any(s.rule == "elastic_reset" for s in specs)
        self.init = {k: v.detach().clone() for k, v in policy.state_dict().items()} if needs_init else None
        self._full = {s.name: s.full for s in specs}

    @torch.no_grad()
    def add_logits(self, micro: RolloutBatch) -> RolloutBatch:
        """``anchor_logits/<name>`` (b, T, V) for the anchors whose divergence is computed exactly."""
        rows = {}
        for name, model in self.models.items():
            if self._full[name]:
                t = micro.tokens
                rows[f"anchor_logits/{name}"] = model(input_ids=t.input_ids, attention_mask=t.attention_mask).logits
        return micro.with_rows(**rows) if rows else micro

    @torch.no_grad()
    def fill_logps(self, batch: RolloutBatch, micro_batch_size: int, device: torch.device) -> RolloutBatch:
        """Add ``anchor_logp/<name>`` (B, T) rows computed by each anchor model on ``batch``."""
        rows = {}
        for name, model in self.models.items():
            if self._full[name]:
                continue  # logits are added per micro-batch (add_logits): a whole-shard (B, T, V) is too big
            parts = []
            for start in range(0, len(batch), micro_batch_size):
                micro = batch.tokens.slice(start, start + micro_batch_size).to(device)
                logits = model(input_ids=micro.input_ids, attention_mask=micro.attention_mask).logits
                parts.append(token_logprobs(logits, micro.input_ids).float().cpu())
            rows[f"anchor_logp/{name}"] = torch.cat(parts)
        return batch.with_rows(**rows)

    @torch.no_grad()
    def update(self, step: int) -> bool:
        """Apply each rule after optimizer step ``step``; True when a rule reset the policy's weights."""
        policy_state = self.policy.state_dict(keep_vars=False)
        reset = False
        for s in self.specs:
            anchor_state = self.models[s.name].state_dict(keep_vars=False)
            out = ANCHORS.get(s.rule)(anchor_state, policy_state, step, s.params, init=self.init)
            reset = reset or out.policy
        return reset
