"""Section ``kdrl``: KDRL against its two halves at small scale — GRPO alone, on-policy KD alone (reverse
KL to the teacher, no reward) and KDRL (GRPO + reward-gated, annealed reverse KL to the teacher).

Setting: 2-digit addition; student = ``recipes/tiny/sft_warmstart_arithmetic.yaml`` (a short SFT, ~0.60
held-out greedy accuracy), teacher = ``recipes/tiny/sft_teacher_arithmetic.yaml`` (~0.99), both built
once into the bench cache. Each method runs its shipped recipe (``recipes/grpo_arithmetic.yaml``,
``recipes/distill_gkd.yaml`` with λ = 1 and reverse KL, ``recipes/kdrl_arithmetic.yaml``) from the same
student for the same number of learner steps and batch size, with seeds 0, 1, 2. Reported: held-out
greedy accuracy (200 problems) every 50 steps, mean ± std over seeds, and the mean response length
(token efficiency, as the KDRL paper reports). Writes ``benchmarks/results/kdrl.json`` and
``kdrl_learning_curves.png``. This is an accuracy study, not a timing: it runs from ``make bench`` only.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks.common import BENCH_CACHE, RESULTS, ROOT, machine, print_table, versions

MODELS = BENCH_CACHE / "kdrl_models"
RUNS = BENCH_CACHE / "kdrl_runs"
STUDENT_RECIPE = ROOT / "recipes" / "tiny" / "sft_warmstart_arithmetic.yaml"
TEACHER_RECIPE = ROOT / "recipes" / "tiny" / "sft_teacher_arithmetic.yaml"
KDRL_RECIPE = ROOT / "recipes" / "kdrl_arithmetic.yaml"


def methods(teacher: Path) -> dict[str, tuple[Path, list[str]]]:
    """Each compared method: its recipe and overrides (all start from the same student)."""
    rkl = (f"anchors=[{{model: path, name: teacher, path: {teacher}, divergence: reverse_kl, estimator: topk, "
           "topk: 20, coef: 1.0}]")
    return {
        "grpo": (ROOT / "recipes" / "grpo_arithmetic.yaml", []),
        "kd_rkl": (ROOT / "recipes" / "distill_gkd.yaml", ["algorithm.lmbda=1.0", rkl]),
        "kdrl": (ROOT / "recipes" / "kdrl_arithmetic.yaml", [f"anchors={_with_teacher(KDRL_RECIPE, teacher)}"]),
    }


def _with_teacher(recipe: Path, teacher: Path) -> str:
    """The recipe's own anchors list (as an override value) with the teacher anchor's path replaced."""
    import yaml

    anchors = yaml.safe_load(recipe.read_text())["anchors"]
    for a in anchors:
        if a.get("model") == "path":
            a["path"] = str(teacher)
    return json.dumps(anchors)


def _sft(recipe: Path, name: str) -> Path:
    from alignrl.cli import main

    export = MODELS / name / "export"
    if not (export / "config.json").is_file():
        assert main(["run", "--overwrite", "--no-progress", str(recipe), f"output_dir={MODELS}", f"name={name}"]) == 0
    return export


def _evals(run: Path) -> tuple[dict[int, float], dict[int, float]]:
    from alignrl.tracking import read_metrics

    rows = [r for r in read_metrics(run / "metrics.jsonl") if "eval/accuracy" in r]
    return {r["step"]: r["eval/accuracy"] for r in rows}, {r["step"]: r["eval/mean_length"] for r in rows}


def run(quick: bool = False) -> dict[str, Any]:
    """Run the section; returns the JSON-ready result, prints a table and writes the PNG."""
    from alignrl.cli import main

    seeds, steps = ((0,), 50) if quick else ((0, 1, 2), 200)
    start = time.perf_counter()
    student, teacher = _sft(STUDENT_RECIPE, "student"), _sft(TEACHER_RECIPE, "teacher")
    results: dict[str, dict[str, Any]] = {}
    for method, (recipe, extra) in methods(teacher).items():
        per_seed = {}
        for seed in seeds:
            name = f"{method}-s{seed}"
            args = ["run", "--overwrite", "--no-progress", str(recipe), f"output_dir={RUNS}", f"name={name}",
                    f"seed={seed}", f"policy.path={student}", f"train.steps={steps}", "train.checkpoint_every=0",
                    "export.enabled=false", *extra]
            assert main(args) == 0, name
            acc, length = _evals(RUNS / name)
            per_seed[seed] = {"accuracy": acc, "mean_length": length}
        final = [v["accuracy"][steps] for v in per_seed.values()]
        lengths = [v["mean_length"][steps] for v in per_seed.values()]
        results[method] = {
            "recipe": str(recipe.relative_to(ROOT)), "overrides": extra, "per_seed": per_seed,
            "start_accuracy": statistics.mean(v["accuracy"][0] for v in per_seed.values()),
            "final_accuracy_mean": statistics.mean(final),
            "final_accuracy_std": statistics.stdev(final) if len(final) > 1 else 0.0,
            "final_mean_length": statistics.mean(lengths),
        }
    print_table(
        f"kdrl: held-out greedy accuracy on 2-digit addition after {steps} learner steps, seeds {list(seeds)}",
        ["method", "start", "final mean", "std", "mean length"],
        [[m, r["start_accuracy"], r["final_accuracy_mean"], r["final_accuracy_std"], r["final_mean_length"]]
         for m, r in results.items()],
    )
    png = RESULTS / ("kdrl_learning_curves_quick.png" if quick else "kdrl_learning_curves.png")
    plot(results, png)
    return {"section": "kdrl", "quick": quick, "seeds": list(seeds), "steps": steps, "student": str(student),
            "teacher": str(teacher), "teacher_eval": json.loads((teacher.parent / "eval.json").read_text())["metrics"],
            "results": results, "plot": str(png.relative_to(ROOT)), "wall_s": time.perf_counter() - start,
            "machine": machine(), "versions": versions("vllm", "deepspeed", "ray", "torch", "transformers")}


def plot(results: dict[str, dict[str, Any]], path: Path) -> None:
    """Mean held-out accuracy per method against learner steps, with a ±1 std band over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method, r in results.items():
        curves = [v["accuracy"] for v in r["per_seed"].values()]
        steps = sorted(curves[0])
        mean = [statistics.mean(c[s] for c in curves) for s in steps]
        std = [statistics.stdev(c[s] for c in curves) if len(curves) > 1 else 0.0 for s in steps]
        ax.plot(steps, mean, marker="o", label=method)
        ax.fill_between(steps, [m - d for m, d in zip(mean, std)], [m + d for m, d in zip(mean, std)], alpha=0.2)
    ax.set_xlabel("learner step")
    ax.set_ylabel("held-out greedy accuracy")
    ax.set_title("2-digit addition: GRPO vs on-policy KD vs KDRL")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
