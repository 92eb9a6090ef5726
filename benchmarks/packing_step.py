"""Section ``packing``: one learner step on rows of very different lengths, padded micro-batches against a token
budget, sequence packing and both (ours vs ours: the learner's batching options, same data, same weights path).

One DeepSpeed learner (world size 1, ZeRO 0, fp32) in this process; the modes differ only in how a step's rows
become micro-batches (``LearnerSettings.micro_batch_tokens`` / ``pack_sequences``), so one engine serves all of
them and the modes alternate block by block (padded, budget, packed, packed+budget, padded, ...). Seconds per
step = the block's wall time / its steps (forward, backward, clipping, the optimizer step). The figure is each
mode's speed-up over padded micro-batches: the median over rounds of padded / mode.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks.common import machine, paired_ratio, print_table, spread, versions

MODES = {"padded": {}, "budget": {"micro_batch_tokens": True}, "packed": {"pack_sequences": True},
         "packed+budget": {"micro_batch_tokens": True, "pack_sequences": True}}


@dataclass(frozen=True)
class PackingSettings:
    model: str = "tiny"           # "tiny" (h256, 4 layers, 100-token vocab) or "smollm2" (SmolLM2-135M, 49k vocab)
    rows: int = 32                # sequences per step
    micro_batch_size: int = 8     # rows per micro-batch when padded (4 micro-batches per step)
    min_length: int = 16
    max_length: int = 256         # lengths drawn log-uniform in [min, max]: a long tail, as chat SFT data has
    seed: int = 0
    block_steps: int = 3
    rounds: int = 5
    warmup_steps: int = 2


def ragged_batch(s: PackingSettings, vocab: int):
    """Right-padded rows of log-uniform lengths, the loss on every token after the first."""
    import math

    import torch

    from alignrl.types import TokenBatch

    g = torch.Generator().manual_seed(s.seed)
    u = torch.rand(s.rows, generator=g)
    lengths = (math.log(s.min_length) + u * (math.log(s.max_length) - math.log(s.min_length))).exp().round().long()
    ids = torch.zeros(s.rows, s.max_length, dtype=torch.long)
    mask = torch.zeros(s.rows, s.max_length, dtype=torch.long)
    for i, n in enumerate(lengths.tolist()):
        ids[i, :n] = torch.randint(4, vocab, (n,), generator=g)
        mask[i, :n] = 1
    loss = mask.bool().clone()
    loss[:, 0] = False
    return TokenBatch(ids, mask, loss)


def _learner(model_dir, s: PackingSettings, steps: int):
    from alignrl.actors.cluster import free_port
    from alignrl.engine.deepspeed_learner import DeepSpeedLearner, LearnerSettings

    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "RANK": "0",
                       "WORLD_SIZE": "1", "LOCAL_RANK": "0"})
    settings = LearnerSettings(model_dir=str(model_dir), world_size=1, batch_size=s.rows,
                               micro_batch_size=s.micro_batch_size, total_steps=steps, lr=1e-5, seed=s.seed)
    learner = DeepSpeedLearner(settings)
    learner.setup()
    return learner


def run(quick: bool = False, model: str | None = None) -> dict[str, Any]:
    import functools

    from alignrl.loops.sft import sft_micro_loss
    from alignrl.objectives.sft import SFTParams
    from benchmarks.models import smollm2_model, tiny_model

    results = {}
    start = time.perf_counter()
    for name in ([model] if model else ["tiny", "smollm2"]):
        s = PackingSettings(model=name)
        if name == "smollm2":
            s = dataclasses.replace(s, rows=16, micro_batch_size=4, max_length=192, block_steps=1)
        if quick:
            s = dataclasses.replace(s, rounds=2, block_steps=1, warmup_steps=1)
        model_dir = tiny_model(hidden=256, layers=4) if name == "tiny" else smollm2_model()
        from transformers import AutoConfig

        vocab = AutoConfig.from_pretrained(model_dir).vocab_size
        batch = ragged_batch(s, vocab)
        budget = s.micro_batch_size * s.max_length // 2  # half the padded micro-batch's area
        learner = _learner(model_dir, s, steps=s.warmup_steps * len(MODES) + s.rounds * s.block_steps * len(MODES))
        loss_fn = functools.partial(sft_micro_loss, params=SFTParams())
        base = learner.settings
        times: dict[str, list[float]] = {m: [] for m in MODES}
        step_metrics: dict[str, dict[str, float]] = {}
        for round_ in range(-1, s.rounds):  # round -1: warm-up of every mode
            for mode, knobs in MODES.items():
                learner.settings = dataclasses.replace(
                    base, micro_batch_tokens=budget if knobs.get("micro_batch_tokens") else 0,
                    pack_sequences=bool(knobs.get("pack_sequences")))
                steps = s.warmup_steps if round_ < 0 else s.block_steps
                t0 = time.perf_counter()
                for _ in range(steps):
                    metrics = learner.train_step(batch, loss_fn)
                if round_ >= 0:
                    times[mode].append((time.perf_counter() - t0) / steps)
                step_metrics[mode] = {k: metrics[k] for k in ("pad_frac", "micro_batches", "loss")}
        del learner  # the process group stays up: the next model's learner joins it
        speedups = {m: paired_ratio(times["padded"], times[m]) for m in MODES if m != "padded"}
        real = int(batch.attention_mask.sum())
        results[name] = {"settings": asdict(s), "budget_tokens": budget, "real_tokens": real,
                         "padded_area": batch.attention_mask.numel(), "s_per_step": {m: spread(v) for m, v in times.items()},
                         "speedup_over_padded": speedups, "step_metrics": step_metrics}
        print_table(f"packing ({name}): learner step on {s.rows} rows of {s.min_length}-{s.max_length} tokens "
                    f"({real} real); speed-up = padded / mode", ["mode", "s/step", "speed-up", "pad_frac",
                                                                 "micro-batches"],
                    [[m, statistics.median(times[m]), speedups[m]["median"] if m in speedups else 1.0,
                      step_metrics[m]["pad_frac"], step_metrics[m]["micro_batches"]] for m in MODES])
    return {"section": "packing", "quick": quick, "results": results, "wall_s": time.perf_counter() - start,
            "machine": machine(), "versions": versions("torch", "transformers", "deepspeed"),
            "notes": ["One engine, modes alternating block by block; the weights keep training across blocks (lr 1e-5), "
                      "which does not change the work per step.",
                      "budget: learner.micro_batch_tokens = half a padded micro-batch's area (rows sorted by length, "
                      "all-padding columns dropped); packed: learner.pack_sequences (rows as wide as the micro-batch's "
                      "longest sequence, block-diagonal causal mask, SDPA); packed+budget: both.",
                      "pad_frac = the share of computed token slots that are padding (the last step of each mode)."]}
