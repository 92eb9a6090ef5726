"""Side-by-side summary of finished runs: one table row per run folder and one PNG of their held-out
accuracy curves (``alignrl compare``, the last step of ``make demo``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from alignrl.errors import UserError
from alignrl.tracking import read_metrics, save_png


@dataclasses.dataclass(frozen=True)
class RunSummary:
    """What one run folder says about itself: its recipe's name and algorithm, the held-out accuracy it
    started and ended at (``eval/accuracy`` at its first and last evaluation), the final mean response
    length, learner steps and wall time."""

    name: str
    algorithm: str
    anchors: str
    steps: int
    start_accuracy: float | None
    final_accuracy: float
    mean_length: float
    wall_s: float
    curve: tuple[tuple[int, float], ...]


def summarize_run(run_dir: Path) -> RunSummary:
    """Read ``metrics.jsonl``, ``eval.json`` and ``recipe.yaml`` of a finished run folder."""
    import yaml

    metrics, final, recipe = run_dir / "metrics.jsonl", run_dir / "eval.json", run_dir / "recipe.yaml"
    for path in (metrics, final, recipe):
        if not path.is_file():
            raise UserError(f"{run_dir}: {path.name} is missing — is this a finished run folder (alignrl run ...)?")
    records = read_metrics(metrics)
    curve = tuple((int(r["step"]), float(r["eval/accuracy"])) for r in records if "eval/accuracy" in r)
    final_metrics = json.loads(final.read_text())["metrics"]
    cfg = yaml.safe_load(recipe.read_text())
    steps = max((int(r["step"]) for r in records), default=0)
    return RunSummary(
        name=str(cfg.get("name") or run_dir.name),
        algorithm=str((cfg.get("algorithm") or {}).get("name", "?")),
        anchors=", ".join(_anchor_label(a) for a in cfg.get("anchors") or []) or "-",
        steps=steps,
        start_accuracy=curve[0][1] if curve and curve[0][0] == 0 else None,
        final_accuracy=float(final_metrics["accuracy"]),
        mean_length=float(final_metrics.get("mean_length", float("nan"))),
        wall_s=max((float(r.get("time", 0.0)) for r in records), default=0.0),
        curve=curve,
    )


def _anchor_label(anchor: dict) -> str:
    divergence = anchor.get("divergence")
    divergence = divergence.get("name") if isinstance(divergence, dict) else divergence
    return f"{anchor.get('name') or anchor.get('model')}:{divergence}/{anchor.get('estimator')}"


def print_summary(summaries: list[RunSummary], title: str) -> None:
    """A rich table, one row per run, in the order given."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in ("run", "algorithm", "anchors", "steps", "start acc", "final acc", "mean len", "wall s"):
        table.add_column(column, justify="left" if column in ("run", "algorithm", "anchors") else "right",
                         no_wrap=column != "anchors")
    for s in summaries:
        start = "-" if s.start_accuracy is None else f"{s.start_accuracy:.3f}"
        table.add_row(s.name, s.algorithm, s.anchors, str(s.steps), start, f"{s.final_accuracy:.3f}", f"{s.mean_length:.2f}",
                      f"{s.wall_s:.0f}")
    console = Console()
    if not console.is_terminal:  # a pipe or log file: do not squeeze the table into rich's default 80 columns
        console = Console(width=160)
    console.print(table)


def plot_accuracy_curves(summaries: list[RunSummary], out_png: Path, title: str) -> Path:
    """Held-out accuracy against learner step, one line per run; written to a temp file, then renamed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for s in summaries:
        if s.curve:
            ax.plot(*zip(*s.curve), marker="o", label=f"{s.name} ({s.algorithm})")
    ax.set_ylim(0.0, 1.02)
    return save_png(fig, out_png, title=title, xlabel="learner step (each run counts its own)",
                    ylabel="held-out greedy accuracy")
