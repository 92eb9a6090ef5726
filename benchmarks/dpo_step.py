"""Section ``dpo``: one DPO optimizer step of alignrl's preference job vs TRL's ``DPOTrainer``, pairs per second.

Same model folder, same pairs (``prefs://arithmetic``: a right and a wrong answer), batch size, sigmoid loss with
β = 0.1, AdamW settings, fp32, clipping and threads on both sides, on the tiny model and on SmolLM2-135M. Both
sides use a frozen reference whose sequence log-probs are computed once before training (ours by default for an
offline frozen reference; TRL with ``precompute_ref_log_probs=True``), so a step is one policy forward and backward
on chosen + rejected. TRL's ``train()`` runs in a helper thread paused after each block of steps; the sides
alternate block by block (``benchmarks.common.TrainerPacer``). Seconds per step of a block = time between the ends
of its first and last step / (steps − 1). Memory is not compared: both sides share one process here.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import (
    BENCH_CACHE,
    TrainerPacer,
    interleaved_blocks,
    machine,
    paired_ratio,
    print_table,
    spread,
    versions,
)

WAIT_S = 900


@dataclass(frozen=True)
class DPOSettings:
    pairs_uri: str = "prefs://arithmetic?digits=2&n=2000&split=train&gold=exact"
    batch_size: int = 32                # pairs per optimizer step, no accumulation
    max_length: int = 32
    beta: float = 0.1
    lr: float = 1e-5
    max_grad_norm: float = 1.0
    seed: int = 0
    warmup_steps: int = 4
    block_steps: int = 11
    blocks: int = 5


def _trl(model_dir: Path, pairs: list, s: DPOSettings):
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    os.environ["TQDM_DISABLE"] = "1"  # TRL's reference precompute bar is hundreds of lines in a log
    config = DPOConfig(
        output_dir=str(BENCH_CACHE / "trl_dpo_out"), per_device_train_batch_size=s.batch_size,
        gradient_accumulation_steps=1, learning_rate=s.lr, optim="adamw_torch", lr_scheduler_type="constant",
        warmup_steps=0, max_grad_norm=s.max_grad_norm, bf16=False, fp16=False, use_cpu=True, beta=s.beta,
        loss_type="sigmoid", max_length=s.max_length, precompute_ref_log_probs=True, padding_free=False,
        max_steps=s.warmup_steps + s.blocks * s.block_steps, eval_strategy="no", save_strategy="no",
        logging_strategy="no", report_to="none", disable_tqdm=True, dataloader_num_workers=0, seed=s.seed,
    )
    data = Dataset.from_list([{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in pairs])
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return DPOTrainer(model=model, args=config, train_dataset=data, processing_class=tokenizer)


def _ours(model_dir: Path, s: DPOSettings):
    from alignrl.actors.cluster import free_port
    from alignrl.engine.deepspeed_learner import DeepSpeedLearner, LearnerSettings

    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "RANK": "0",
                       "WORLD_SIZE": "1", "LOCAL_RANK": "0"})
    learner = DeepSpeedLearner(LearnerSettings(
        model_dir=str(model_dir), world_size=1, batch_size=2 * s.batch_size, micro_batch_size=2 * s.batch_size,
        total_steps=s.warmup_steps + s.blocks * s.block_steps, lr=s.lr, max_grad_norm=s.max_grad_norm, seed=s.seed))
    learner.setup()
    return learner


def _side_by_side(model_dir: Path, s: DPOSettings) -> dict[str, Any]:
    import functools

    import torch

    from alignrl.data.sources import load_preference_examples
    from alignrl.loops.preference import _batches, preference_micro_loss
    from alignrl.loops.reward_model import collate_pairs, tokenize_pairs
    from alignrl.models.loading import load_tokenizer
    from alignrl.objectives.dpo import DPOParams
    from alignrl.objectives.preference_job import PreferenceJobParams
    from alignrl.registry import Component

    pairs = load_preference_examples(s.pairs_uri)
    tokenizer = load_tokenizer(model_dir)
    tokenized = tokenize_pairs(tokenizer, pairs, s.max_length, "pairs")
    trainer = _trl(model_dir, pairs, s)  # before DeepSpeed sets the dist env vars
    learner = _ours(model_dir, s)
    ref = torch.cat([learner.forward_logp_sums(collate_pairs(tokenized[i:i + 256], tokenizer.pad_token_id))
                     for i in range(0, len(tokenized), 256)])
    batches = _batches(tokenized, s.batch_size, tokenizer.pad_token_id, s.seed, ref)
    params = PreferenceJobParams(loss=Component("dpo", DPOParams(beta=s.beta)))
    loss_fn = functools.partial(preference_micro_loss, params=params)

    pacer = TrainerPacer(trainer, [s.warmup_steps] + [s.block_steps] * s.blocks, name="TRL DPOTrainer", wait_s=WAIT_S)
    ours_s, trl_s = interleaved_blocks(lambda: learner.train_step(next(batches), loss_fn), pacer,
                                       warmup_steps=s.warmup_steps, block_steps=s.block_steps, blocks=s.blocks,
                                       label="dpo")
    return {"ours_s_per_step": spread(ours_s), "trl_s_per_step": spread(trl_s),
            "pairs_per_s": {"ours": s.batch_size / spread(ours_s)["median"],
                            "trl": s.batch_size / spread(trl_s)["median"]},
            "ratio_trl_s_over_ours_s": paired_ratio(trl_s, ours_s), "blocks": {"ours": ours_s, "trl": trl_s},
            "threads": {"ours": torch.get_num_threads(), "trl_thread": pacer.threads_seen}}


def run(quick: bool = False) -> dict[str, Any]:
    """Run the section on the tiny model and SmolLM2-135M; returns the JSON-ready result and prints a table."""
    from benchmarks.models import smollm2_model, tiny_model

    tiny = DPOSettings(warmup_steps=2, block_steps=4, blocks=2) if quick else DPOSettings()
    small = DPOSettings(pairs_uri="prefs://arithmetic?digits=2&n=400&split=train&gold=exact", batch_size=8, lr=1e-6,
                        warmup_steps=2, block_steps=3 if quick else 5, blocks=2 if quick else 3)
    results = {"tiny (h128, 4 layers)": (tiny, _side_by_side(tiny_model(hidden=128, layers=4), tiny))}
    results["SmolLM2-135M"] = (small, _side_by_side(smollm2_model(), small))
    rows = [[name, s.batch_size, r["pairs_per_s"]["ours"], r["pairs_per_s"]["trl"],
             r["ratio_trl_s_over_ours_s"]["median"],
             f"{r['ratio_trl_s_over_ours_s']['min']:.2f}-{r['ratio_trl_s_over_ours_s']['max']:.2f}"]
            for name, (s, r) in results.items()]
    print_table("dpo: pairs/s, frozen reference precomputed on both sides (speed-up = TRL s/step ÷ ours)",
                ["model", "pairs/step", "ours pairs/s", "TRL pairs/s", "speed-up", "range"], rows)
    return {"section": "dpo", "quick": quick,
            "results": {name: {"settings": asdict(s), **r} for name, (s, r) in results.items()},
            "sides": {"ours": "DeepSpeedLearner.train_step(batch, preference_micro_loss), ZeRO 0, gloo; reference sums "
                              "cached before training (loops/preference.cached_reference)",
                      "peer": "trl.DPOTrainer.train(), loss_type sigmoid, precompute_ref_log_probs=True"},
            "machine": machine(), "versions": versions("trl", "transformers", "accelerate", "deepspeed", "torch")}
