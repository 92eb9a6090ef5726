"""One data-parallel rank of the DeepSpeed learner: engine set-up, a train step on any loss, full weights.

The train step takes a ``loss_fn(model, micro_batch) -> LossOut`` so SFT, RL and preference loops
share this engine. On CPU it runs DeepSpeed's CPU accelerator with gloo; on CUDA it uses NCCL.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import torch

from alignrl.data.micro_batches import trim_padding
from alignrl.data.packing import PackedForward
from alignrl.types import LossOut, RolloutBatch, TokenBatch

LossFn = Callable[[torch.nn.Module, Any], LossOut]  # (model, TokenBatch | RolloutBatch micro-batch)


@dataclass(frozen=True, kw_only=True, slots=True)
class LearnerSettings:
    """What one rank needs to build its engine (a subset of the recipe's learner/train sections)."""

    model_dir: str
    world_size: int
    batch_size: int          # sequences per optimizer step over all ranks
    micro_batch_size: int    # sequences per forward/backward on one rank
    total_steps: int
    lr: float
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0
    lr_schedule: str = "constant"
    min_lr_ratio: float = 0.0
    max_grad_norm: float = 1.0
    zero_stage: int = 0
    bf16: bool = False
    seed: int = 0
    lora: dict | None = None  # peft.LoraConfig keyword arguments (r, lora_alpha, lora_dropout, target_modules)
    model_kind: str = "causal_lm"  # "value": a per-token scalar head (the PPO critic); "reward": a sequence scalar head
    members: int = 1  # reward + lora: this many LoRA members + heads on one frozen backbone (models/lora_ensemble.py)
    micro_batch_tokens: int = 0  # > 0: micro-batches by token budget (data/micro_batches), not micro_batch_size rows
    pack_sequences: bool = False  # each micro-batch's sequences packed into few rows, no padding computed (data/packing)

    @property
    def accumulation_steps(self) -> int:
        return self.batch_size // (self.world_size * self.micro_batch_size)


def lr_multiplier(step: int, s: LearnerSettings) -> float:
    """Linear warm-up to 1, then constant or cosine decay to ``min_lr_ratio`` at ``total_steps``."""
    if step < s.warmup_steps:
        return (step + 1) / s.warmup_steps
    if s.lr_schedule == "constant":
        return 1.0
    progress = min(1.0, (step - s.warmup_steps) / max(1, s.total_steps - s.warmup_steps))
    return s.min_lr_ratio + (1 - s.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def deepspeed_config(s: LearnerSettings) -> dict:
    """The DeepSpeed JSON config for these settings."""
    return {
        "train_batch_size": s.batch_size,
        "train_micro_batch_size_per_gpu": s.micro_batch_size,
        "gradient_accumulation_steps": s.accumulation_steps,
        "gradient_clipping": s.max_grad_norm,
        "zero_optimization": {"stage": s.zero_stage},
        "zero_allow_untested_optimizer": True,  # torch AdamW: avoids a 50 s cpu_adam JIT build on CPU
        # ZeRO 1-3 skip a step whose reduced gradient norm is NaN/inf (optimizer and LR schedule untouched); bf16
        # must ask for that check, fp32 has it whenever the norm is computed (always, as clipping is on by default)
        "bf16": {"enabled": s.bf16, "check_grad_overflow": True},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


# What DeepSpeed's optimizer checkpoints hold besides tensors and plain containers (ZeRO 1-3), found by loading
# checkpoints of every stage, fp32 and bf16, with nothing allowed (tests/integration/test_learner_group.py)
CHECKPOINT_GLOBALS = ("deepspeed.runtime.fp16.loss_scaler.LossScaler", "deepspeed.runtime.zero.config.ZeroStageEnum",
                      "deepspeed.utils.tensor_fragment.fragment_address")


def weights_only_checkpoint_engine(engine: Any) -> Any:
    """DeepSpeed's torch checkpoint engine, loading with ``torch.load(weights_only=True)`` (no arbitrary pickle:
    only tensors, containers and the classes in CHECKPOINT_GLOBALS) instead of its ``weights_only=False``."""
    import importlib

    from deepspeed.runtime.checkpoint_engine.torch_checkpoint_engine import TorchCheckpointEngine

    if type(engine) is not TorchCheckpointEngine:  # another engine (fast/decoupled writers): left as configured
        return engine
    allowed = [getattr(importlib.import_module(name.rpartition(".")[0]), name.rpartition(".")[2])
               for name in CHECKPOINT_GLOBALS]

    def load(path: str, map_location=None):
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location=map_location, weights_only=True)

    engine.load = load
    return engine


def _grad_norm(module: torch.nn.Module) -> float:
    grads = [p.grad.detach().float() for p in module.parameters() if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))) if grads else 0.0


class DeepSpeedLearner:
    """Owns the DeepSpeed engine of one rank. ``setup`` is a collective: call it on all ranks at once."""

    def __init__(self, settings: LearnerSettings) -> None:
        self.settings = settings
        self.engine = None
        self.anchors = None  # MovingAnchors, when the recipe has EMA / Elastic Reset anchors
        self.steps_taken = 0
        self._step: dict | None = None  # the step micro_step is accumulating

    def setup(self, moving_anchors: list | None = None) -> None:
        """Build the engine (collective); ``moving_anchors``: MovingAnchorSpecs to host beside the policy."""
        import deepspeed
        from transformers import AutoModelForCausalLM

        warnings.filterwarnings("ignore", message=".*all_gather_into_tensor.*")
        s = self.settings
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        deepspeed.init_distributed(dist_backend=backend, verbose=False)
        torch.manual_seed(s.seed)
        if s.model_kind == "value":
            from transformers import AutoModelForTokenClassification

            model = AutoModelForTokenClassification.from_pretrained(s.model_dir, num_labels=1, dtype=torch.float32,
                                                                    use_safetensors=True)
            torch.nn.init.zeros_(model.score.weight)  # V ≡ 0 at the start: no random baseline noise
        elif s.model_kind == "reward":  # model_dir is a sequence-classification folder (its head seeded by the loop)
            from transformers import AutoModelForSequenceClassification

            model = AutoModelForSequenceClassification.from_pretrained(s.model_dir, num_labels=1, dtype=torch.float32,
                                                                       use_safetensors=True)
            if s.lora is not None:
                from alignrl.models.lora_ensemble import LoraRewardEnsemble

                model = LoraRewardEnsemble(model, s.members, s.lora["r"], s.lora["lora_alpha"],
                                           tuple(s.lora["target_modules"]))
        else:
            model = AutoModelForCausalLM.from_pretrained(s.model_dir, dtype=torch.float32, use_safetensors=True)
        if s.lora is not None and s.model_kind != "reward":
            from peft import LoraConfig, get_peft_model

            model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **s.lora))
        trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        decay = [p for n, p in trainable if p.ndim >= 2]
        no_decay = [p for n, p in trainable if p.ndim < 2]
        groups = [{"params": decay, "weight_decay": s.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        groups = [g for g in groups if g["params"]]  # LoRA adapters have no 1-D weights
        # fused: one kernel over all tensors; on CPU 6x faster than the foreach default for 135M parameters, and
        # HF Trainer's (so TRL's) default optimizer since torch 2.8
        optimizer = torch.optim.AdamW(groups, lr=s.lr, betas=s.betas, fused=True)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_multiplier(step, s))
        self.engine, _, _, _ = deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=scheduler, config=deepspeed_config(s)
        )
        self.engine.checkpoint_engine = weights_only_checkpoint_engine(self.engine.checkpoint_engine)
        if s.world_size == 1 and s.zero_stage == 0:
            # alone, the all-reduce is an identity, yet DeepSpeed still flattens, sends and copies back every
            # gradient: 18 % of a DPO step of SmolLM2-135M on one CPU thread
            self.engine.enable_backward_allreduce = False
        if moving_anchors:
            from alignrl.engine.moving_anchors import MovingAnchors, ShardedMovingAnchors

            if s.zero_stage == 3:
                self.anchors = ShardedMovingAnchors(self.engine.module, moving_anchors, s.model_dir,
                                                    deepspeed_config(s))
            else:
                self.anchors = MovingAnchors(self.engine.module, moving_anchors)

    def train_step(self, batch: TokenBatch | RolloutBatch, loss_fn: LossFn) -> dict[str, float]:
        """One optimizer step over this rank's shard: micro-batches, backward, clip, step.

        Returns the mean of each LossOut metric over micro-batches (weighted by their rows) plus loss, grad_norm,
        lr, micro_batches (their count) and pad_frac (the share of computed token slots that are padding).
        """
        mbs = self.settings.micro_batch_size
        if len(batch) != mbs * self.settings.accumulation_steps:
            raise ValueError(f"rank shard has {len(batch)} rows, expected {mbs * self.settings.accumulation_steps}")
        self.begin_step()
        if self.anchors is not None:
            batch = self.anchors.fill_logps(batch, mbs, self.engine.device)
        plan = self._micro_batches(batch)
        for k, (micro, weight) in enumerate(plan):
            if not self.micro_step(micro, weight, loss_fn, last=k == len(plan) - 1):
                break
        return self.end_step()

    def begin_step(self) -> None:
        """Start an optimizer step fed one micro-batch at a time (``micro_step``, then ``end_step``): what
        ``train_step`` does over a whole shard, and what a streamed step does as its rows arrive."""
        self.engine.train()
        # dropout (LoRA's, a model's) draws from a stream fixed by (seed, rank, step): a resumed run draws as the
        # uninterrupted one did, with no RNG state to checkpoint
        torch.manual_seed(self.settings.seed * 1_000_003 + self.rank * 7_919 + self.steps_taken)
        self._step = {"sums": {}, "real": 0, "area": 0, "nonfinite": 0, "count": 0, "own_norm": None}

    def micro_step(self, micro: TokenBatch | RolloutBatch, weight: float, loss_fn: LossFn, *, last: bool,
                   fill_anchors: bool = False) -> bool:
        """Forward and backward of one micro-batch (``weight``: its share of the shard's rows); ``last`` ends the
        step (gradients reduced, clipped, optimizer and scheduler stepped). ``fill_anchors``: the hosted anchors'
        log-probs are computed here (a streamed step has no whole shard to fill first). False when the step
        cannot go on: at ZeRO 0 the reduced gradient was NaN/inf (``end_step`` then skips it)."""
        engine, acc = self.engine, self._step
        # we say where the step ends: by budget the number of micro-batches varies, and a skipped step must not
        # shift DeepSpeed's own count of them
        engine.set_gradient_accumulation_boundary(last)
        if fill_anchors and self.anchors is not None:
            micro = self.anchors.fill_logps(micro, len(micro), engine.device)
        if self.settings.pack_sequences:
            # a packed forward's logits come back as wide as the micro-batch: without its all-padding columns, the
            # loss's log-softmax skips them too
            micro = trim_padding(micro)
        mask = (micro.tokens if isinstance(micro, RolloutBatch) else micro).attention_mask
        acc["real"] += int(mask.sum())
        acc["count"] += 1
        micro = micro.to(engine.device)
        if self.anchors is not None:
            micro = self.anchors.add_logits(micro)
        model = self._model_for_losses()
        out = loss_fn(model, micro)
        acc["area"] += model.area if isinstance(model, PackedForward) else mask.numel()
        acc["nonfinite"] += int(not torch.isfinite(out.loss.detach()).all())
        # DeepSpeed divides each micro-batch's loss by its fixed accumulation count; by budget, micro-batches
        # differ in size, so each is weighted by its share of the shard's rows instead
        by_budget = self.settings.micro_batch_tokens > 0
        engine.backward(out.loss * (weight * self.settings.accumulation_steps) if by_budget else out.loss)
        if last and self.settings.zero_stage == 0:  # ZeRO 1-3: DeepSpeed's own overflow check
            acc["own_norm"] = _grad_norm(engine.module)  # DeepSpeed tracks no norm without ZeRO; grads are reduced
            if not math.isfinite(acc["own_norm"]):
                return False  # the reduced gradient is the same on every rank: all of them skip this step
        engine.step()
        for key, value in {"loss": out.loss.detach(), **out.metrics}.items():
            acc["sums"][key] = acc["sums"].get(key, 0.0) + weight * float(value)
        return True

    def end_step(self) -> dict[str, float]:
        """The step's metrics (``train_step``'s); a step whose gradient norm was NaN/inf is skipped: no optimizer or
        scheduler step, no anchor update, ``skipped`` 1."""
        engine, acc = self.engine, self._step
        own_norm = acc["own_norm"]
        metrics = dict(acc["sums"])
        if own_norm is not None and not math.isfinite(own_norm):
            engine.zero_grad()  # no optimizer or scheduler step: the weights and Adam moments stay as they were
            metrics = {"skipped": 1.0, "nonfinite_loss_frac": acc["nonfinite"] / acc["count"]}
        elif self.settings.zero_stage > 0 and not engine.was_step_applied():  # DeepSpeed found the norm NaN/inf
            metrics = {"skipped": 1.0, "nonfinite_loss_frac": acc["nonfinite"] / acc["count"]}
        metrics["micro_batches"] = float(acc["count"])
        metrics["pad_frac"] = 1.0 - acc["real"] / max(acc["area"], 1)
        grad_norm = own_norm if own_norm is not None else engine.get_global_grad_norm()
        metrics["grad_norm"] = float(grad_norm) if grad_norm is not None else float("nan")
        metrics["lr"] = float(engine.get_lr()[0])
        if metrics.get("skipped"):
            return metrics  # the step did not happen: no step counted, no anchor update
        self.steps_taken += 1
        if self.anchors is not None and self.anchors.update(self.steps_taken):
            metrics["anchor_reset"] = 1.0
        return metrics

    def _micro_batches(self, batch: TokenBatch | RolloutBatch) -> list[tuple[TokenBatch | RolloutBatch, float]]:
        """(micro-batch, its share of the shard's rows) in training order: ``micro_batch_size`` rows each, or by
        ``micro_batch_tokens`` (sorted by length, padding columns dropped, the same count on every rank)."""
        s = self.settings
        if s.micro_batch_tokens <= 0:
            mbs = s.micro_batch_size
            return [(batch.slice(start, start + mbs), mbs / len(batch)) for start in range(0, len(batch), mbs)]
        from alignrl.data.micro_batches import split_to_count, token_budget_groups

        tokens = batch.tokens if isinstance(batch, RolloutBatch) else batch
        groups = token_budget_groups(tokens.attention_mask, s.micro_batch_tokens)
        if s.world_size > 1:
            count = torch.tensor([len(groups)], device=self.engine.device)
            torch.distributed.all_reduce(count, op=torch.distributed.ReduceOp.MAX)
            groups = split_to_count(groups, int(count.item()))
        return [(trim_padding(batch.select(g)), len(g) / len(batch)) for g in groups]

    def _model_for_losses(self) -> Any:
        """The engine, or with ``pack_sequences`` the engine behind a PackedForward (a loss's padded forward runs
        on packed rows)."""
        return PackedForward(self.engine) if self.settings.pack_sequences else self.engine

    @torch.no_grad()
    def forward_values(self, batch: TokenBatch) -> torch.Tensor:
        """(B, T) critic values aligned like token log-probs: V[:, t] = V(s_t) read at position t − 1 (the state
        before token t is chosen), 0 at position 0."""
        self.engine.eval()
        return self._per_micro(batch, lambda micro: value_predictions(self._model_for_losses(), micro))

    @torch.no_grad()
    def forward_scores(self, batch: TokenBatch, member: int | None = None) -> torch.Tensor:
        """(B,) scalar scores of a reward model (its head read at each row's last non-pad token); ``member``: which
        member of a LoRA ensemble scores."""
        engine = self.engine
        engine.eval()
        if member is not None:
            engine.module.set_member(member)
        return self._per_micro(
            batch, lambda micro: engine(input_ids=micro.input_ids, attention_mask=micro.attention_mask).logits[:, 0])

    @torch.no_grad()
    def forward_logp_sums(self, batch: TokenBatch, anchor: str | None = None) -> torch.Tensor:
        """(B,) Σ_t log π(x_t | x_<t) over each row's loss-mask tokens under the current policy, or under the hosted
        ``anchor`` (a collective under ZeRO-3), float32 on CPU."""
        from alignrl.ops import token_logprobs

        self.engine.eval()
        model = self._model_for_losses() if anchor is None else self.anchors.models[anchor]

        def sums(micro: TokenBatch) -> torch.Tensor:
            logits = model(input_ids=micro.input_ids, attention_mask=micro.attention_mask).logits
            return (token_logprobs(logits, micro.input_ids).float() * micro.loss_mask).sum(1)

        return self._per_micro(batch, sums)

    @torch.no_grad()
    def forward_pair_logp_sums(self, batch: RolloutBatch) -> torch.Tensor:
        """(P, 2) log-prob sums of the chosen (column 0) and rejected (column 1) response of each shared-prompt row
        (``data/shared_prompt``) under the current policy, float32 on CPU."""
        from alignrl.data.shared_prompt import shared_prompt_token_logps

        self.engine.eval()
        return self._per_micro(batch, lambda micro: shared_prompt_token_logps(self.engine, micro)[1])

    def _per_micro(self, batch: TokenBatch | RolloutBatch, fn: Callable) -> torch.Tensor:
        """``fn`` on each micro-batch (on the engine's device), the float32 results concatenated on CPU."""
        mbs = self.settings.micro_batch_size
        return torch.cat([fn(batch.slice(start, start + mbs).to(self.engine.device)).float().cpu()
                          for start in range(0, len(batch), mbs)])

    def member_state_dicts(self) -> list[dict[str, torch.Tensor]]:
        """A LoRA reward ensemble's members, each as a plain HF sequence-classifier state dict (CPU)."""
        module = self.engine.module
        return [module.member_state_dict(k) for k in range(module.members)]

    def full_state_dict(self, copy: bool = True) -> dict[str, torch.Tensor]:
        """Full (un-sharded) CPU weights under HF names, on every rank (ZeRO-3 shards are gathered).

        With LoRA: the base weights with the adapters merged in (W + s·B·A), under the base model's names.
        ``copy`` False: CPU parameters are returned as detached views where possible (valid until the next
        optimizer step; for a caller that copies them at once).
        """
        import deepspeed

        module = self.engine.module
        if self.settings.model_kind == "reward" and self.settings.lora is not None:
            raise ValueError("a LoRA reward model keeps its members apart: use member_state_dicts")
        if self.settings.lora is not None:
            return merged_lora_state_dict(module)
        if self.settings.zero_stage == 3:
            params = list(module.parameters())
            with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
                return {n: t.detach().to("cpu", copy=True) for n, t in module.state_dict().items()}
        return {n: t.detach().to("cpu", copy=copy) for n, t in module.state_dict().items()}

    def lora_adapter_bucket(self) -> dict | None:
        """A causal-LM LoRA policy's adapters as one sync bucket (``actors/lora_sync``), else None (send full
        weights)."""
        if self.settings.lora is None or self.settings.model_kind != "causal_lm":
            return None
        from alignrl.actors.lora_sync import lora_adapter_bucket

        return lora_adapter_bucket(self.engine.module, self.settings.model_dir)

    def save_engine_state(self, directory: str, tag: str) -> None:
        """DeepSpeed's own checkpoint (optimizer + scheduler + weights) for exact resume; collective."""
        self.engine.save_checkpoint(directory, tag=tag)

    def load_engine_state(self, directory: str, tag: str, steps_taken: int) -> None:
        """Restore weights, optimizer and scheduler from ``save_engine_state``'s folder (collective)."""
        path, _ = self.engine.load_checkpoint(directory, tag=tag, load_optimizer_states=True,
                                              load_lr_scheduler_states=True)
        if path is None:
            raise FileNotFoundError(f"no DeepSpeed checkpoint {tag!r} under {directory}")
        self.steps_taken = steps_taken

    def anchor_states(self) -> dict[str, dict[str, torch.Tensor]]:
        """The moving anchors' full weights (CPU copies), for checkpoints; under ZeRO-3 a collective."""
        return {} if self.anchors is None else self.anchors.states()

    def load_anchor_states(self, states: dict[str, dict[str, torch.Tensor]]) -> None:
        """Restore ``anchor_states``' output; every rank passes the same states (a collective under ZeRO-3)."""
        self.anchors.load_states(states)

    @property
    def rank(self) -> int:
        return int(os.environ.get("RANK", "0"))


@torch.no_grad()
def merged_lora_state_dict(peft_model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The base model's state dict with every LoRA adapter merged, under plain HF names (a copy on CPU).

    Merges in place, copies, then unmerges, so training continues on the unmerged adapters.
    """
    peft_model.merge_adapter()
    try:
        base = peft_model.get_base_model()
        out = {}
        for name, t in base.state_dict().items():
            if "lora_" in name:
                continue
            out[name.replace(".base_layer", "")] = t.detach().to("cpu", copy=True)
        return out
    finally:
        peft_model.unmerge_adapter()


def value_predictions(model: torch.nn.Module, batch: TokenBatch) -> torch.Tensor:
    """(B, T) V(s_t) for the action at position t, from a scalar-head model: its output at t − 1; 0 at t = 0."""
    scores = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[..., 0]  # (B, T)
    return torch.nn.functional.pad(scores[:, :-1], (1, 0), value=0.0)
