"""The streamed learner (``rollout.stream_learner``) against the same step trained after the whole batch: GRPO on
the tiny model, two HF rollout workers (the batch comes in two parts), a frozen-init scorer, one DeepSpeed learner
taking micro-batches of 8 rows. Runs alternate off / on, each a fresh run (Ray up, warm-up steps, measured steps);
the figure is the median over pairs of (median step time off) / (median step time on).

No peer has this (TRL trains after the whole batch; verl and OpenRLHF stream generation into scoring, not into the
learner), so the comparison is with ourselves.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks.common import BENCH_CACHE, machine, paired_ratio, print_table, spread, versions


@dataclass(frozen=True)
class StreamSettings:
    hidden: int = 128
    layers: int = 4
    prompts_per_step: int = 16
    group_size: int = 4
    max_new_tokens: int = 8
    rollout_workers: int = 2
    micro_batch_size: int = 8
    warmup_steps: int = 2
    measured_steps: int = 8
    pairs: int = 3
    ray_cpus: int = 3  # learner 1 + 2 rollout workers x 0.5 + scorer 0.5 on the 2 cores: oversubscribed alike


def _config(model_dir, s: StreamSettings, streamed: bool):
    from alignrl.config import load_recipe
    from benchmarks.rl import RECIPE

    return load_recipe(RECIPE, [
        f"name=stream-bench-{'on' if streamed else 'off'}", f"policy.path={model_dir}", f"output_dir={BENCH_CACHE / 'stream_runs'}", "data.eval=null",
        f"algorithm={{name: grpo, group_size: {s.group_size}, loss_agg: token_mean}}",
        "anchors=[{model: init, divergence: reverse_kl, estimator: k3, coef: 0.04, cpus: 0.5}]",
        "rollout.engine=hf", f"rollout.workers={s.rollout_workers}", "rollout.cpus_per_worker=0.5",
        f"rollout.max_new_tokens={s.max_new_tokens}", "rollout.overlap=false", "rollout.max_staleness=0",
        f"rollout.stream_learner={str(streamed).lower()}", f"ray.num_cpus={s.ray_cpus}",
        f"learner.micro_batch_size={s.micro_batch_size}", "learner.cpus_per_worker=1", "learner.lr=1.0e-4",
        f"train.batch_size={s.prompts_per_step * s.group_size}", f"train.steps={s.warmup_steps + s.measured_steps}",
        "train.log_every=1", "train.eval_every=0", "train.checkpoint_every=0", "export.enabled=false",
    ])


def _one_run(model_dir, s: StreamSettings, streamed: bool) -> dict[str, Any]:
    from alignrl.loops.online_rl import run_online_rl
    from alignrl.tracking import read_metrics

    cfg = _config(model_dir, s, streamed)
    run_online_rl(cfg, overwrite=True, show_progress=False)
    rows = [r for r in read_metrics(cfg.run_dir / "metrics.jsonl") if "time/step_s" in r and r["step"] > s.warmup_steps]
    out = {"step_s": statistics.median(r["time/step_s"] for r in rows),
           "learner_loss": statistics.mean(r["train/loss"] for r in rows)}
    if streamed:
        out["early_frac"] = statistics.mean(r["train/streamed_early_frac"] for r in rows)
    return out


def run(quick: bool = False) -> dict[str, Any]:
    from benchmarks.models import tiny_model

    s = StreamSettings(measured_steps=4, pairs=1) if quick else StreamSettings()
    model_dir = tiny_model(hidden=s.hidden, layers=s.layers)
    off, on = [], []
    start = time.perf_counter()
    for _ in range(s.pairs):
        off.append(_one_run(model_dir, s, streamed=False))
        on.append(_one_run(model_dir, s, streamed=True))
    ratio = paired_ratio([r["step_s"] for r in off], [r["step_s"] for r in on])
    print_table("stream: GRPO step with the learner streamed into scoring vs after the batch (tiny model, 2 HF "
                "rollout workers; ratio = off / on, higher is better)",
                ["mode", "s/step (median of runs)", "micro-batches sent early"],
                [["after the batch", statistics.median(r["step_s"] for r in off), ""],
                 ["streamed", statistics.median(r["step_s"] for r in on),
                  statistics.mean(r["early_frac"] for r in on)],
                 ["off / on", ratio["median"], f"{ratio['min']:.2f}-{ratio['max']:.2f}"]])
    return {"section": "stream", "quick": quick, "settings": asdict(s), "model_dir": str(model_dir),
            "off": off, "on": on, "off_s_per_step": spread([r["step_s"] for r in off]),
            "on_s_per_step": spread([r["step_s"] for r in on]), "ratio_off_over_on": ratio,
            "wall_s": time.perf_counter() - start, "machine": machine(),
            "versions": versions("torch", "transformers", "deepspeed", "ray"),
            "notes": ["Each run is fresh; runs alternate off, on, off, on ... so neighbouring runs share the machine's "
                      "load. s/step is the median of time/step_s over the measured steps (generate + score + learner "
                      "+ sync). early = the share of learner micro-batches sent before the last part was scored.",
                      "Two cores run 3 CPUs' worth of actors (ray.num_cpus 3), alike in both modes: streaming can only "
                      "fill time the cores would otherwise idle (waiting for a worker's part, for the scorer)."]}
