"""Anchors whose weights follow the policy (EMA, Elastic Reset), hosted beside the learner's model.

Why here and not in a ScorerWorker: an EMA changes after every optimizer step from the policy's weights,
which live in the learner. Keeping the EMA copy on each learner rank makes the update a local in-place
lerp (no weight transfer per step) and its log-probs one extra no-grad forward on the rank's own shard.
Cost: one more model copy per rank in the policy's dtype; under ZeRO-3 (``ShardedMovingAnchors``) the copy is
sharded like the policy, 1/world of the model per rank.
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

    def states(self) -> dict[str, dict[str, torch.Tensor]]:
        """Each anchor's full weights (CPU copies), for checkpoints."""
        return {name: {k: v.detach().to("cpu", copy=True) for k, v in m.state_dict().items()}
                for name, m in self.models.items()}

    def load_states(self, states: dict[str, dict[str, torch.Tensor]]) -> None:
        for name, state in states.items():
            self.models[name].load_state_dict(state)


class ShardedMovingAnchors(MovingAnchors):
    """The same anchors under ZeRO-3: each anchor is a parameter-partitioned DeepSpeed engine (no optimizer), so a
    rank holds 1/world of it, as it does of the policy.

    ZeRO-3 cuts every parameter alike (flattened, padded to a multiple of world, rank r keeps chunk r), so the
    anchor's chunk and the policy's chunk of a parameter cover the same elements, and the rules (element-wise
    lerps) run on the chunks, ``param.ds_tensor``, with no communication. Forward passes gather each layer's
    weights as the policy's do; all ranks run the same number of them (shards are equal), as gathers are
    collective. The anchor keeps no parameter resident (persistence threshold 0): a resident full copy would
    not see the chunk updates. Elastic Reset is refused under ZeRO 1-3 at recipe load (it rewrites the
    policy's weights, whose master copy ZeRO keeps elsewhere), so only rules that move the anchor run here.
    """

    def __init__(self, policy: torch.nn.Module, specs: list[MovingAnchorSpec], model_dir: str, ds_config: dict) -> None:
        import deepspeed
        from transformers import AutoModelForCausalLM

        if any(s.rule == "elastic_reset" for s in specs):
            raise ValueError("elastic_reset needs learner.zero_stage: 0")
        self.specs = specs
        self.policy = policy
        self.init = None
        self._full = {s.name: s.full for s in specs}
        config = {k: v for k, v in ds_config.items() if k not in ("gradient_clipping", "zero_allow_untested_optimizer")}
        config["zero_optimization"] = {"stage": 3, "stage3_param_persistence_threshold": 0}
        self.models = {}
        for s in specs:
            # starts where the policy starts (the same folder); a resumed run then loads the checkpointed anchor
            model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, use_safetensors=True)
            engine, _, _, _ = deepspeed.initialize(model=model, config=config)
            self.models[s.name] = engine.module.eval().requires_grad_(False)

    @staticmethod
    def _chunks(model: torch.nn.Module) -> dict[str, torch.Tensor]:
        return {n: p.ds_tensor.data for n, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, step: int) -> bool:
        policy_chunks = self._chunks(self.policy)
        for s in self.specs:
            ANCHORS.get(s.rule)(self._chunks(self.models[s.name]), policy_chunks, step, s.params, init=None)
        return False

    def states(self) -> dict[str, dict[str, torch.Tensor]]:
        """Full weights, gathered (a collective: every rank calls in; every rank gets them)."""
        import deepspeed

        out = {}
        for name, m in self.models.items():
            with deepspeed.zero.GatheredParameters(list(m.parameters()), modifier_rank=None):
                out[name] = {k: v.detach().to("cpu", copy=True) for k, v in m.state_dict().items()}
        return out

    def load_states(self, states: dict[str, dict[str, torch.Tensor]]) -> None:
        """Every rank passes the same full weights; rank 0's are written and re-partitioned (a collective)."""
        import deepspeed

        for name, state in states.items():
            m = self.models[name]
            with deepspeed.zero.GatheredParameters(list(m.parameters()), modifier_rank=0):
                if torch.distributed.get_rank() == 0:
                    m.load_state_dict(state)
