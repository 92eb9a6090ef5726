"""Section ``sft_step``: one SFT optimizer step of alignrl's DeepSpeed learner vs TRL's ``SFTTrainer``.

Same model folder, same tokenized examples, batch size, AdamW settings, fp32 and clipping on both
sides. TRL's ``trainer.train()`` runs in a helper thread and a callback pauses it after every
block of steps, so the two sides alternate block by block (ours, TRL, ours, TRL, ...) in one
process, each in one continuous training run. Seconds per step of a block = time between the
ends of its first and last step / (steps - 1): data loading, forward, backward, clipping, the
optimizer and scheduler step and each trainer's own per-step bookkeeping are all inside.
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

WAIT_S = 900  # longest a side may take for one block before the benchmark gives up


@dataclass(frozen=True)
class SFTSettings:
    """Every setting both sides share (the JSON states them; TRL's extra ones are listed there too)."""

    model: str = "tiny Llama, hidden 128, 4 layers, seed 0 (alignrl.models.tiny)"
    task_uri: str = "tasks://arithmetic?digits=2&n=2000"
    batch_size: int = 64
    micro_batch_size: int = 64          # no gradient accumulation on either side
    max_length: int = 32
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    lr_schedule: str = "constant, no warm-up"
    max_grad_norm: float = 1.0
    dtype: str = "float32"
    optimizer: str = "torch.optim.AdamW(fused=True) (TRL: optim='adamw_torch_fused', its default)"
    loss: str = "token-mean NLL over completion tokens + EOS"
    seed: int = 0
    warmup_steps: int = 5
    block_steps: int = 21               # 20 measured intervals per block
    blocks: int = 9
    zero_stage: int = 0


def _tokenized(tokenizer, s: SFTSettings) -> tuple[list, list]:
    """(raw examples, our ``TokenizedExample``s) for the task URI."""
    from alignrl.data.collate import tokenize_sft
    from alignrl.tasks import examples_from_uri

    raw = examples_from_uri(s.task_uri)
    return raw, [tokenize_sft(tokenizer, ex.prompt, ex.completion, s.max_length) for ex in raw]


def _trl_trainer(model_dir: Path, raw: list, s: SFTSettings):
    """An ``SFTTrainer`` on the prompt-completion dataset with completion-only loss."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    config = SFTConfig(
        output_dir=str(BENCH_CACHE / "trl_sft_out"), per_device_train_batch_size=s.batch_size,
        gradient_accumulation_steps=1, learning_rate=s.lr, optim="adamw_torch_fused", adam_beta1=s.betas[0],
        adam_beta2=s.betas[1], adam_epsilon=s.eps, weight_decay=s.weight_decay, lr_scheduler_type="constant",
        warmup_steps=0, max_grad_norm=s.max_grad_norm, bf16=False, fp16=False, use_cpu=True,
        gradient_checkpointing=False, max_steps=s.warmup_steps + s.blocks * s.block_steps,
        max_length=s.max_length, completion_only_loss=True, packing=False, padding_free=False,
        eval_strategy="no", save_strategy="no", logging_strategy="no", report_to="none", disable_tqdm=True,
        dataloader_num_workers=0, seed=s.seed, data_seed=s.seed,
    )
    dataset = Dataset.from_list([{"prompt": ex.prompt, "completion": ex.completion} for ex in raw])
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)
    return trainer, config


def _our_learner(model_dir: Path, s: SFTSettings):
    """alignrl's DeepSpeed learner, one process, world size 1 (env as ``actors/learner.py`` sets it)."""
    from alignrl.actors.cluster import free_port
    from alignrl.engine.deepspeed_learner import DeepSpeedLearner, LearnerSettings

    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "RANK": "0",
                       "WORLD_SIZE": "1", "LOCAL_RANK": "0"})
    settings = LearnerSettings(
        model_dir=str(model_dir), world_size=1, batch_size=s.batch_size, micro_batch_size=s.micro_batch_size,
        total_steps=s.warmup_steps + s.blocks * s.block_steps, lr=s.lr, weight_decay=s.weight_decay,
        betas=s.betas, warmup_steps=0, lr_schedule="constant", max_grad_norm=s.max_grad_norm,
        zero_stage=s.zero_stage, bf16=False, seed=s.seed,
    )
    learner = DeepSpeedLearner(settings)
    learner.setup()
    return learner, settings


def _fixed_batch_loss(model, batch) -> float:
    """Token-mean completion NLL of ``model`` on one batch (a sanity check that both sides trained alike)."""
    import torch

    from alignrl.loops.sft import sft_micro_loss
    from alignrl.objectives.sft import SFTParams

    with torch.no_grad():
        return float(sft_micro_loss(model, batch, SFTParams()).loss)


def _same_tokens(trainer, ours: list) -> dict[str, Any]:
    """Does TRL's tokenization (input ids, completion start) equal ours, example by example?"""
    data = trainer.train_dataset
    ids = data["input_ids"]
    labels = data["labels"] if "labels" in data.column_names else None
    mismatched = 0
    for i, ex in enumerate(ours):
        start = next((j for j, v in enumerate(labels[i]) if v != -100), len(ids[i])) if labels else None
        if tuple(ids[i]) != ex.ids or (start is not None and start != ex.n_prompt):
            mismatched += 1
    return {"examples": len(ours), "mismatched": mismatched, "trl_columns": data.column_names}


def run(quick: bool = False) -> dict[str, Any]:
    """Run the section; returns the JSON-ready result and prints a table."""
    import functools

    import torch

    from alignrl.engine.deepspeed_learner import deepspeed_config
    from alignrl.loops.sft import _batches, sft_micro_loss
    from alignrl.models.loading import load_tokenizer
    from alignrl.objectives.sft import SFTParams
    from benchmarks.models import tiny_model

    s = SFTSettings(warmup_steps=3, block_steps=6, blocks=2) if quick else SFTSettings()
    model_dir = tiny_model(hidden=128, layers=4)
    tokenizer = load_tokenizer(model_dir)
    raw, ours = _tokenized(tokenizer, s)
    trainer, trl_config = _trl_trainer(model_dir, raw, s)  # before DeepSpeed sets the dist env vars
    tokens = _same_tokens(trainer, ours)
    learner, settings = _our_learner(model_dir, s)
    batches = _batches(ours, s.batch_size, tokenizer.pad_token_id, s.seed)
    loss_fn = functools.partial(sft_micro_loss, params=SFTParams())

    pacer = TrainerPacer(trainer, [s.warmup_steps] + [s.block_steps] * s.blocks, name="TRL SFTTrainer",
                         wait_s=WAIT_S)
    load = machine()["loadavg"]
    ours_s, trl_s = interleaved_blocks(lambda: learner.train_step(next(batches), loss_fn), pacer,
                                       warmup_steps=s.warmup_steps, block_steps=s.block_steps, blocks=s.blocks,
                                       label="sft_step")

    check = next(_batches(ours, s.batch_size, tokenizer.pad_token_id, seed=12345))
    trl_model = trainer.model.eval()
    result = {
        "loadavg_start": load, "ours_s_per_step": spread(ours_s), "trl_s_per_step": spread(trl_s),
        "ratio_ours_over_trl": paired_ratio(ours_s, trl_s),
        "blocks": {"ours": ours_s, "trl": trl_s},
        "fixed_batch_loss_after": {"ours": _fixed_batch_loss(learner.engine.module.eval(), check),
                                   "trl": _fixed_batch_loss(trl_model, check)},
        "threads": {"ours": torch.get_num_threads(), "trl_thread": pacer.threads_seen},
        "trl_accelerate": {"distributed_type": str(trainer.accelerator.distributed_type),
                           "num_processes": trainer.accelerator.num_processes},
        "same_tokenization": tokens,
    }
    r = result["ratio_ours_over_trl"]
    print_table(
        f"sft_step: batch {s.batch_size}, {s.blocks} interleaved blocks of {s.block_steps} steps",
        ["side", "s/step median", "min", "max", "ours/TRL", "ratio min-max"],
        [["alignrl (DeepSpeed)", result["ours_s_per_step"]["median"], result["ours_s_per_step"]["min"],
          result["ours_s_per_step"]["max"], r["median"], f"{r['min']:.2f}-{r['max']:.2f}"],
         ["TRL SFTTrainer", result["trl_s_per_step"]["median"], result["trl_s_per_step"]["min"],
          result["trl_s_per_step"]["max"], "", ""]],
    )
    trl_args = {k: getattr(trl_config, k) for k in (
        "per_device_train_batch_size", "gradient_accumulation_steps", "learning_rate", "optim", "adam_beta1",
        "adam_beta2", "adam_epsilon", "weight_decay", "lr_scheduler_type", "warmup_steps", "max_grad_norm", "bf16",
        "fp16", "use_cpu", "gradient_checkpointing", "max_steps", "max_length", "completion_only_loss", "packing",
        "padding_free", "loss_type", "eval_strategy", "save_strategy", "logging_strategy", "report_to",
        "dataloader_num_workers", "seed", "use_liger_kernel", "torch_compile")}
    return {
        "section": "sft_step", "quick": quick, "settings": asdict(s), "model_dir": str(model_dir),
        "sides": {
            "ours": "alignrl DeepSpeedLearner.train_step(batch, sft_micro_loss), ZeRO 0, gloo, batches from "
                    "alignrl.loops.sft._batches (seeded shuffle, right padding to the longest row)",
            "peer": "trl.SFTTrainer.train() on a prompt/completion datasets.Dataset (TRL tokenizes it; "
                    "its collator pads right to the longest row); its per-step entropy/accuracy metrics included",
        },
        "ours_deepspeed_config": deepspeed_config(settings),
        "trl_args": {k: getattr(v, "value", v) if not isinstance(v, list) else v for k, v in trl_args.items()},
        "batch_order": "each side shuffles the same 2000 examples with its own seeded sampler",
        "machine": machine(), "versions": versions("trl", "transformers", "accelerate", "deepspeed", "torch"),
        "result": result,
    }
