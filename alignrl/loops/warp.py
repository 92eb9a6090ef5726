"""WARP as one job (Ramé et al. 2024, "WARP: On the Benefits of Weight Averaged Rewarded Policies",
arXiv:2406.16768): for iteration i = 1..I,

1. M online-RL runs from θ_init^i, each anchored to its own EMA (the recipe's ``ema`` anchor), seeds s + m;
2. SLERP of their task vectors δ_m = θ_m − θ_init^i (M > 2: folded in pairwise, the k-th run entering with
   t = 1/k, so every run weighs alike up to the spherical correction);
3. LITI θ^i(η) = θ_init^i + η·(θ_slerp − θ_init^i) for every η in ``warp.etas``: each interpolant's mean reward
   on sampled held-out completions, greedy accuracy, and KL(π_η ‖ π_sft) estimated by Σ_t log π_η − log π_sft
   on those samples (the KL-reward front);
4. θ_init^{i+1} = θ^i(warp.eta).

The M runs of an iteration train side by side on the Ray cluster, each driven by a Ray task with its own
actors (``warp.parallel_runs`` at once; by default as many as the cluster's CPUs and GPUs hold), and share
nothing but the init folder; the run folder must be on storage every node sees. Everything lands there: ``iter<i>-run<m>/`` (each RL run with its
checkpoints and curves), ``iter<i>/eta_<η>/`` (the interpolants), ``warp_front.json``, ``warp_front.png``,
and ``export/`` (the final θ_init^{I+1}).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import torch

from alignrl.config import ModelConfig, RunConfig
from alignrl.errors import UserError
from alignrl.io import atomic_dir
from alignrl.loops.common import create_run_dir, load_run_data, prepare_policy, write_json
from alignrl.merging import merge_state_dicts
from alignrl.merging.liti import LitiParams
from alignrl.merging.slerp import SlerpParams
from alignrl.models.export import load_hf_weights, save_hf_folder
from alignrl.tracking import save_png


def slerp_task_vectors(states: list[dict[str, torch.Tensor]], init: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """θ_init + SLERP of the runs' task vectors; more than two runs fold in pairwise with t = 1/k for the k-th."""
    merged = states[0]
    for k, state in enumerate(states[1:], start=2):
        merged = merge_state_dicts("slerp", [merged, state], base=init, params=SlerpParams(t=1.0 / k))
    return merged


@torch.no_grad()
def evaluate_interpolant(model_dir: Path, sft: torch.nn.Module, cfg: RunConfig, data, seed: int,
                         samples: int | None = None) -> dict[str, float]:
    """Mean reward (the training reward of ``data.train``'s URI, graded when it says so) and KL(π ‖ π_sft) on
    ``samples`` (default ``warp.eval_samples``, else 2) sampled completions per held-out prompt, and greedy (exact)
    accuracy, all with the recipe's sampling settings (HF engine in this process); ``sft`` is the loaded SFT
    reference (``load_causal_lm``, eval mode), loaded once by the caller."""
    from alignrl.loops.common import run_eval
    from alignrl.loops.online_rl import build_batch
    from alignrl.ops import token_logprobs
    from alignrl.rollout.base import SamplingConfig
    from alignrl.rollout.hf_engine import HFEngine
    from alignrl.tasks.base import reward_for

    engine = HFEngine(model_dir)
    prompts = [x.prompt for x in data.eval]
    n = samples or (cfg.warp.eval_samples if cfg.warp is not None else 2)
    sampled = engine.generate(prompts, SamplingConfig(n=n, temperature=cfg.rollout.temperature, top_p=cfg.rollout.top_p,
                                                      max_new_tokens=cfg.rollout.max_new_tokens, seed=seed,
                                                      logprobs=True))
    completions = [c for group in sampled for c in group]
    answers = [x.answer for x in data.eval for _ in range(n)]
    rewards = reward_for(cfg.data.train, [c.text for c in completions], answers)  # the training reward (may be graded)
    prompt_ids = [engine.tokenizer(p)["input_ids"] for p in prompts for _ in range(n)]
    batch = build_batch(prompt_ids, completions, engine.tokenizer.pad_token_id)
    tokens = batch.tokens
    logits = sft(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask).logits
    logp_sft = token_logprobs(logits.float(), tokens.input_ids)
    mask = tokens.loss_mask
    kl = float(((batch.rows["logp_rollout"] - logp_sft) * mask).sum(1).mean())
    greedy = run_eval(engine, data, cfg) or {"metrics": {}}
    return {"reward": sum(rewards) / len(rewards), "kl_to_sft": kl,
            "accuracy": float(greedy["metrics"].get("accuracy", float("nan"))),
            "mean_length": float(mask.sum(1).float().mean())}


def parallel_runs(cfg: RunConfig) -> int:
    """``warp.parallel_runs``, or (unset) how many runs' actors the connected Ray cluster holds at once."""
    import ray

    from alignrl.loops.online_rl import actor_cpu_asks

    if cfg.warp.parallel_runs is not None:
        return min(cfg.warp.parallel_runs, cfg.warp.runs)
    resources = ray.cluster_resources()
    fits = [resources.get("CPU", 0.0) / max(sum(actor_cpu_asks(cfg).values()), 1e-9)]
    gpus = cfg.rollout.workers * cfg.rollout.gpus_per_worker
    if gpus > 0:
        fits.append(resources.get("GPU", 0.0) / gpus)
    return max(1, min(cfg.warp.runs, int(min(fits) + 1e-9)))


def _train_one(sub: RunConfig, show_progress: bool) -> dict[str, float]:
    """One WARP run (a Ray task when runs go side by side): its wall-clock start and end. A run folder a resumed
    job finds finished is kept (its times read from its ``warp_run.json``), one with a checkpoint goes on from it; a dead
    learner worker restarts the run from its last checkpoint (``loops.with_learner_restarts``)."""
    from alignrl.export import export_run, find_checkpoint
    from alignrl.loops import with_learner_restarts
    from alignrl.loops.common import has_checkpoint
    from alignrl.loops.online_rl import run_online_rl

    record = sub.run_dir / "warp_run.json"
    if record.is_file():  # written after the run's export: the run is complete
        return json.loads(record.read_text())
    started = time.time()
    if has_checkpoint(sub.run_dir) and find_checkpoint(sub.run_dir).name == f"step_{sub.train.steps:06d}":
        export_run(sub.run_dir, what="policy", checkpoint="latest", out_dir=sub.run_dir / "export", overwrite=True)
    else:
        with_learner_restarts(run_online_rl, sub, overwrite=True, show_progress=show_progress,
                              resume=has_checkpoint(sub.run_dir))
    times = {"started": started, "finished": time.time()}
    write_json(record, times)
    return times


def train_runs(subs: list[RunConfig], at_once: int, show_progress: bool) -> list[dict[str, float]]:
    """Train the runs, ``at_once`` at a time as Ray tasks (each builds and drives its own actors), or in this
    process when ``at_once`` is 1; returns each run's start and end times. A failed run stops the job with its
    own message."""
    import ray

    from alignrl.actors.cluster import task_error_detail

    if at_once == 1:
        return [_train_one(sub, show_progress) for sub in subs]
    remote = ray.remote(num_cpus=0)(_train_one)  # the task only drives; its actors hold the resources
    pending: dict = {}
    done: dict[int, dict[str, float]] = {}
    queue = list(enumerate(subs))
    while queue or pending:
        while queue and len(pending) < at_once:
            m, sub = queue.pop(0)
            pending[remote.remote(sub, False)] = m
        ready, _ = ray.wait(list(pending), num_returns=1)
        m = pending.pop(ready[0])
        try:
            done[m] = ray.get(ready[0])
        except ray.exceptions.RayTaskError as err:
            cause = getattr(err, "cause", None)
            raise UserError(f"WARP run {subs[m].name}: {cause if isinstance(cause, UserError) else task_error_detail(err)}"
                            ) from None
        if show_progress:
            print(f"warp: {subs[m].name} done in {done[m]['finished'] - done[m]['started']:.0f} s", flush=True)
    return [done[m] for m in range(len(subs))]


def run_warp(cfg: RunConfig, *, overwrite: bool = False, show_progress: bool = True, resume: bool = False) -> dict:
    """Run the WARP procedure (module docstring); returns the chosen final interpolant's metrics. ``resume``: keep
    the iterations ``warp_front.json`` records, and in the next one the RL runs that finished; the others go on
    from their last checkpoints."""
    from alignrl.actors.cluster import ray_session

    data = load_run_data(cfg)
    if resume:
        run_dir = cfg.run_dir
        if (run_dir / "export" / "config.json").is_file():
            raise UserError(f"--resume {run_dir}: this WARP job has finished (its export/ is written)")
    else:
        run_dir = create_run_dir(cfg, overwrite=overwrite)
    with ray_session(cfg.ray.address, cfg.ray.num_cpus):
        return _warp_iterations(cfg, data, run_dir, show_progress, resume)


def _warp_iterations(cfg: RunConfig, data, run_dir: Path, show_progress: bool, resume: bool = False) -> dict:
    from alignrl.models.loading import load_causal_lm

    w = cfg.warp
    at_once = parallel_runs(cfg)
    sft_dir = prepare_policy(cfg, run_dir, resume=resume)
    sft = load_causal_lm(sft_dir, key="policy").eval()
    init_dir, front, final = sft_dir, [], {}
    done = 0  # iterations a resumed job keeps
    if resume and (run_dir / "warp_front.json").is_file():
        front = read_front(run_dir)
        done = 1 + max(p["iteration"] for p in front)
        final = next(p for p in front if p["iteration"] == done - 1 and p["eta"] == w.eta)
        init_dir = run_dir / f"iter{done - 1}" / f"eta_{w.eta:g}"
    for i in range(done, w.iterations):
        subs = [dataclasses.replace(
            cfg, name=f"iter{i}-run{m}", output_dir=str(run_dir), seed=cfg.seed + 1000 * i + m, warp=None,
            policy=ModelConfig(path=str(init_dir), dtype=cfg.policy.dtype),
            export=dataclasses.replace(cfg.export, enabled=True)) for m in range(w.runs)]
        times = train_runs(subs, at_once, show_progress)
        exports = [sub.run_dir / "export" for sub in subs]
        for m, sub in enumerate(subs):
            front.append({"iteration": i, "run": m, "eta": None, "kind": "rl_run", **times[m],
                          **evaluate_interpolant(sub.run_dir / "export", sft, cfg, data, cfg.seed + i)})
        init = load_hf_weights(init_dir)
        merged = slerp_task_vectors([load_hf_weights(e) for e in exports], init)
        for eta in sorted(set(w.etas) | {w.eta}):
            out = run_dir / f"iter{i}" / f"eta_{eta:g}"
            state = merge_state_dicts("liti", [merged], base=init, params=LitiParams(eta=eta))
            save_hf_folder(state, exports[0], out, overwrite=True)
            point = {"iteration": i, "run": None, "eta": eta, "kind": "liti",
                     **evaluate_interpolant(out, sft, cfg, data, cfg.seed + i)}
            front.append(point)
            if eta == w.eta:
                final = point
        init_dir = run_dir / f"iter{i}" / f"eta_{w.eta:g}"
        write_json(run_dir / "warp_front.json", {"points": front, "chosen_eta": w.eta, "parallel_runs": at_once})
    with atomic_dir(run_dir / "export", overwrite=True) as tmp:
        for f in init_dir.iterdir():
            shutil.copy2(f, tmp / f.name)
    plot_front(front, run_dir / "warp_front.png")
    _print_front(front)
    return {k: final[k] for k in ("reward", "kl_to_sft", "accuracy")}


def plot_front(points: list[dict], out_png: Path, others: dict[str, list[dict]] | None = None,
               title: str = "WARP: KL-reward front") -> Path:
    """KL to the SFT start (x) against mean reward (y): one line of LITI interpolants per iteration (η labelled),
    the individual RL runs as crosses, and optionally other runs' points (``others``: label -> points with
    ``kl_to_sft`` and ``reward``) as dashed lines. Written to a temp file and renamed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.8, 4.4))
    for i in sorted({p["iteration"] for p in points}):
        line = sorted((p for p in points if p["iteration"] == i and p["kind"] == "liti"), key=lambda p: p["eta"])
        ax.plot([p["kl_to_sft"] for p in line], [p["reward"] for p in line], marker="o", label=f"WARP iter {i} (LITI η)")
        for p in line:
            ax.annotate(f"{p['eta']:g}", (p["kl_to_sft"], p["reward"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        runs = [p for p in points if p["iteration"] == i and p["kind"] == "rl_run"]
        ax.scatter([p["kl_to_sft"] for p in runs], [p["reward"] for p in runs], marker="x", s=60,
                   label=f"WARP iter {i} RL runs")
    for label, line in (others or {}).items():
        ax.plot([p["kl_to_sft"] for p in line], [p["reward"] for p in line], marker="s", linestyle="--", label=label)
    return save_png(fig, out_png, title=title, xlabel="KL(π ‖ π_sft) per sequence",
                    ylabel="mean sampled reward (held-out)", legend_size=7)


def _print_front(points: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="WARP: KL-reward front")
    for col in ("iter", "point", "KL to SFT", "reward", "greedy acc", "length"):
        table.add_column(col, justify="right")
    for p in points:
        label = f"run {p['run']}" if p["kind"] == "rl_run" else f"η={p['eta']:g}"
        table.add_row(str(p["iteration"]), label, f"{p['kl_to_sft']:.3f}", f"{p['reward']:.3f}", f"{p['accuracy']:.3f}",
                      f"{p['mean_length']:.2f}")
    Console(width=120).print(table)


def read_front(run_dir: Path) -> list[dict]:
    """The points of a finished WARP run folder (``warp_front.json``)."""
    return json.loads((run_dir / "warp_front.json").read_text())["points"]
