"""Section ``dpo``: one DPO optimizer step of alignrl's preference job vs TRL's ``DPOTrainer``, pairs per second, and
each side's peak memory.

Same model folder, same pairs (``prefs://arithmetic``: a right and a wrong answer), batch size, sigmoid loss with
β = 0.1, fused AdamW (TRL's default optimizer), fp32, clipping and threads on both sides, on the tiny model and on
SmolLM2-135M. Both sides use a frozen reference whose sequence log-probs are computed once before training (ours by
default for an offline frozen reference; TRL with ``precompute_ref_log_probs=True``), so a step is one policy forward
and backward. Ours scores each pair as one shared-prompt row (``data/shared_prompt``: the prompt once, vocabulary
logits only where a response token is predicted; the job's default); TRL one row per response, padded. TRL's
``train()`` runs in a helper thread paused after each block of steps; the sides alternate block by block
(``benchmarks.common.TrainerPacer``). Seconds per step of a block = time between the ends of its first and last
step / (steps − 1). A second interleaving times our shared-prompt rows against our own one-row-per-response layout
on the same engine, to show what the layout contributes. Peak memory: each side again in a fresh process
(``python -m benchmarks.dpo_step --memory SIDE ...``) that loads the model, prepares the reference sums and takes
a few steps; its peak resident set (``VmHWM``) is reported.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import (
    BENCH_CACHE,
    TrainerPacer,
    interleave,
    interleaved_blocks,
    machine,
    paired_ratio,
    print_table,
    spread,
    threads,
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
        gradient_accumulation_steps=1, learning_rate=s.lr, optim="adamw_torch_fused", lr_scheduler_type="constant",
        warmup_steps=0, max_grad_norm=s.max_grad_norm, bf16=False, fp16=False, use_cpu=True, beta=s.beta,
        loss_type="sigmoid", max_length=s.max_length, precompute_ref_log_probs=True, padding_free=False,
        max_steps=s.warmup_steps + s.blocks * s.block_steps, eval_strategy="no", save_strategy="no",
        logging_strategy="no", report_to="none", disable_tqdm=True, dataloader_num_workers=0, seed=s.seed,
    )
    data = Dataset.from_list([{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in pairs])
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return DPOTrainer(model=model, args=config, train_dataset=data, processing_class=tokenizer)


def _ours(model_dir: Path, s: DPOSettings, rows_per_pair: int = 1):
    from alignrl.actors.cluster import free_port
    from alignrl.engine.deepspeed_learner import DeepSpeedLearner, LearnerSettings

    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "RANK": "0",
                       "WORLD_SIZE": "1", "LOCAL_RANK": "0"})
    learner = DeepSpeedLearner(LearnerSettings(
        model_dir=str(model_dir), world_size=1, batch_size=rows_per_pair * s.batch_size,
        micro_batch_size=rows_per_pair * s.batch_size,
        total_steps=s.warmup_steps + s.blocks * s.block_steps, lr=s.lr, max_grad_norm=s.max_grad_norm, seed=s.seed))
    learner.setup()
    return learner


def _our_batches(model_dir: Path, s: DPOSettings, learner, shared: bool):
    """Our endless batches with the cached reference sums, as the preference job builds them."""
    import torch

    from alignrl.data.shared_prompt import collate_shared_prompt
    from alignrl.data.sources import load_preference_examples
    from alignrl.loops.preference import _batches
    from alignrl.loops.reward_model import collate_pairs, tokenize_pairs
    from alignrl.models.loading import load_tokenizer

    tokenizer = load_tokenizer(model_dir)
    tokenized = tokenize_pairs(tokenizer, load_preference_examples(s.pairs_uri), s.max_length, "pairs")
    pad = tokenizer.pad_token_id
    chunks = [tokenized[i:i + 256] for i in range(0, len(tokenized), 256)]
    if shared:
        ref = torch.cat([learner.forward_pair_logp_sums(collate_shared_prompt(c, pad)).reshape(-1) for c in chunks])
    else:
        ref = torch.cat([learner.forward_logp_sums(collate_pairs(c, pad)) for c in chunks])
    return _batches(tokenized, s.batch_size, pad, s.seed, ref, shared)


def _loss_fn(s: DPOSettings):
    import functools

    from alignrl.loops.preference import preference_micro_loss
    from alignrl.objectives.dpo import DPOParams
    from alignrl.objectives.preference_job import PreferenceJobParams
    from alignrl.registry import Component

    return functools.partial(preference_micro_loss,
                             params=PreferenceJobParams(loss=Component("dpo", DPOParams(beta=s.beta))))


def _side_by_side(model_dir: Path, s: DPOSettings) -> dict[str, Any]:
    import torch

    from alignrl.data.sources import load_preference_examples

    trainer = _trl(model_dir, load_preference_examples(s.pairs_uri), s)  # before DeepSpeed sets the dist env vars
    learner = _ours(model_dir, s)
    batches = _our_batches(model_dir, s, learner, shared=True)
    loss_fn = _loss_fn(s)
    pacer = TrainerPacer(trainer, [s.warmup_steps] + [s.block_steps] * s.blocks, name="TRL DPOTrainer", wait_s=WAIT_S)
    ours_s, trl_s = interleaved_blocks(lambda: learner.train_step(next(batches), loss_fn), pacer,
                                       warmup_steps=s.warmup_steps, block_steps=s.block_steps, blocks=s.blocks,
                                       label="dpo")
    layout = _layout_attribution(model_dir, s, learner, batches, loss_fn)
    return {"ours_s_per_step": spread(ours_s), "trl_s_per_step": spread(trl_s),
            "pairs_per_s": {"ours": s.batch_size / spread(ours_s)["median"],
                            "trl": s.batch_size / spread(trl_s)["median"]},
            "ratio_trl_s_over_ours_s": paired_ratio(trl_s, ours_s), "blocks": {"ours": ours_s, "trl": trl_s},
            "layout": layout, "threads": {"ours": torch.get_num_threads(), "trl_thread": pacer.threads_seen}}


def _layout_attribution(model_dir: Path, s: DPOSettings, learner, shared_batches, loss_fn) -> dict[str, Any]:
    """Seconds per step of our shared-prompt rows vs our one-row-per-response layout, interleaved on one engine
    (the row layout needs a learner whose batch is 2 rows per pair: a second engine on the same model)."""
    import time

    rows_learner = _ours(model_dir, s, rows_per_pair=2)
    row_batches = _our_batches(model_dir, s, rows_learner, shared=False)

    def block(learner_, batches):
        def run() -> dict[str, float]:
            start = time.perf_counter()
            for _ in range(s.block_steps):
                learner_.train_step(next(batches), loss_fn)
            return {"s_per_step": (time.perf_counter() - start) / s.block_steps}
        return run

    kept = interleave({"shared_prompt": block(learner, shared_batches), "rows": block(rows_learner, row_batches)},
                      repeats=s.blocks, warmup=1, label="dpo layout")
    shared_s = [k["s_per_step"] for k in kept["shared_prompt"]]
    rows_s = [k["s_per_step"] for k in kept["rows"]]
    return {"shared_prompt_s_per_step": spread(shared_s), "rows_s_per_step": spread(rows_s),
            "ratio_rows_over_shared": paired_ratio(rows_s, shared_s)}


MEMORY_STEPS = 4


def _memory_side(side: str, model_dir: Path, s: DPOSettings) -> dict[str, float]:
    """In this (fresh) process: set one side up, take MEMORY_STEPS steps, return the peak resident set in MiB."""
    import dataclasses

    from alignrl.data.sources import load_preference_examples

    s = dataclasses.replace(s, warmup_steps=MEMORY_STEPS, blocks=0)
    if side == "trl":
        _trl(model_dir, load_preference_examples(s.pairs_uri), s).train()
    else:
        learner = _ours(model_dir, s)
        batches, loss_fn = _our_batches(model_dir, s, learner, shared=True), _loss_fn(s)
        for _ in range(MEMORY_STEPS):
            learner.train_step(next(batches), loss_fn)
    # VmHWM, not ru_maxrss: ru_maxrss survives execve, so a child started by a big parent reports the parent's peak
    with open("/proc/self/status") as f:
        hwm_kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    return {"peak_rss_mib": hwm_kb / 1024}


def _peak_memory(model_dir: Path, s: DPOSettings) -> dict[str, float]:
    """Each side's peak resident set in its own fresh process (same threads as the timed run)."""
    import json
    import subprocess
    import sys
    import tempfile

    out = {}
    for side in ("ours", "trl"):
        with tempfile.TemporaryDirectory() as tmp:
            result = Path(tmp) / "peak.json"
            cmd = [sys.executable, "-m", "benchmarks.dpo_step", "--threads", str(threads()), "--memory", side,
                   str(model_dir), json.dumps(asdict(s)), str(result)]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=WAIT_S)
            if done.returncode != 0:
                raise RuntimeError(f"dpo memory probe ({side}) failed:\n{done.stderr[-3000:]}")
            out[side] = json.loads(result.read_text())["peak_rss_mib"]
    out["ratio_trl_over_ours"] = out["trl"] / out["ours"]
    return out


def run(quick: bool = False) -> dict[str, Any]:
    """Run the section on the tiny model and SmolLM2-135M; returns the JSON-ready result and prints a table."""
    from benchmarks.models import smollm2_model, tiny_model

    tiny = DPOSettings(warmup_steps=2, block_steps=4, blocks=2) if quick else DPOSettings()
    small = DPOSettings(pairs_uri="prefs://arithmetic?digits=2&n=400&split=train&gold=exact", batch_size=8, lr=1e-6,
                        warmup_steps=2, block_steps=3 if quick else 5, blocks=2 if quick else 3)
    results = {}
    for name, model_dir, s in (("tiny (h128, 4 layers)", tiny_model(hidden=128, layers=4), tiny),
                               ("SmolLM2-135M", smollm2_model(), small)):
        results[name] = (s, {**_side_by_side(model_dir, s), "peak_memory": _peak_memory(model_dir, s)})
    rows = [[name, s.batch_size, r["pairs_per_s"]["ours"], r["pairs_per_s"]["trl"],
             r["ratio_trl_s_over_ours_s"]["median"],
             f"{r['ratio_trl_s_over_ours_s']['min']:.2f}-{r['ratio_trl_s_over_ours_s']['max']:.2f}",
             r["layout"]["ratio_rows_over_shared"]["median"], r["peak_memory"]["ours"], r["peak_memory"]["trl"]]
            for name, (s, r) in results.items()]
    print_table("dpo: pairs/s, frozen reference precomputed on both sides (speed-up = TRL s/step ÷ ours; layout = "
                "ours one row per response s/step ÷ ours shared-prompt rows; peak RSS MiB, fresh process per side)",
                ["model", "pairs/step", "ours pairs/s", "TRL pairs/s", "speed-up", "range", "layout", "ours MiB",
                 "TRL MiB"], rows)
    return {"section": "dpo", "quick": quick,
            "results": {name: {"settings": asdict(s), **r} for name, (s, r) in results.items()},
            "sides": {"ours": "DeepSpeedLearner.train_step(batch, preference_micro_loss), ZeRO 0, gloo, fused AdamW; "
                              "shared-prompt rows; reference sums cached before training "
                              "(loops/preference.cached_reference)",
                      "peer": "trl.DPOTrainer.train(), loss_type sigmoid, precompute_ref_log_probs=True, "
                              "optim adamw_torch_fused (its default), padding_free=False (its default)"},
            "machine": machine(), "versions": versions("trl", "transformers", "accelerate", "deepspeed", "torch")}


if __name__ == "__main__":
    import argparse
    import json

    from benchmarks.common import set_threads, setup_env

    parser = argparse.ArgumentParser(description="dpo section's per-side peak-memory probe")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--memory", nargs=4, metavar=("SIDE", "MODEL_DIR", "SETTINGS_JSON", "OUT_JSON"), required=True)
    args = parser.parse_args()
    setup_env()
    set_threads(args.threads)
    side, model_dir, settings, out = args.memory
    Path(out).write_text(json.dumps(_memory_side(side, Path(model_dir), DPOSettings(**json.loads(settings)))))
