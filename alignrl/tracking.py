"""Metrics to JSONL + TensorBoard in the run folder, a live progress bar, and learning-curve PNGs."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class Tracker:
    """Append-only metrics log of one run: ``metrics.jsonl`` (one object per line) + TensorBoard events."""

    def __init__(self, run_dir: Path, total_steps: int, *, show_progress: bool = True, live_keys=("loss",),
                 resume_step: int | None = None) -> None:
        """``resume_step``: continue a run from its checkpoint at that step; records after it (written after
        the checkpoint by the interrupted run) are dropped from metrics.jsonl and TensorBoard."""
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir = run_dir
        path = run_dir / "metrics.jsonl"
        if resume_step is not None and path.is_file():
            kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= resume_step]
            tmp = path.with_name(".metrics.jsonl.tmp")
            tmp.write_text("".join(line + "\n" for line in kept))
            tmp.replace(path)
        self.jsonl = open(path, "a", buffering=1)
        self.tb = SummaryWriter(log_dir=str(run_dir / "tensorboard"),
                                purge_step=None if resume_step is None else resume_step + 1)
        self.live_keys = live_keys
        self.start = time.time()
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn(), TextColumn("{task.fields[live]}"), disable=not show_progress,
        )
        self.task = self.progress.add_task(run_dir.name, total=total_steps, live="", completed=resume_step or 0)
        self.progress.start()

    def log(self, step: int, metrics: dict[str, float], *, advance: bool = True) -> None:
        """Write one record at ``step``; non-finite values are kept in JSON as strings ("nan")."""
        record: dict[str, Any] = {"step": step, "time": round(time.time() - self.start, 3)}
        for key, value in metrics.items():
            value = float(value)
            record[key] = value if math.isfinite(value) else str(value)
            if math.isfinite(value):
                self.tb.add_scalar(key, value, step)
        self.jsonl.write(json.dumps(record) + "\n")
        live = "  ".join(f"{k}={metrics[k]:.4g}" for k in self.live_keys if k in metrics)
        self.progress.update(self.task, completed=step if advance else None, live=live or None)

    def note(self, step: int, text: str) -> None:
        """An event worth a line of its own (a skipped step, a restarted worker): ``{"step", "time", "note"}`` in
        metrics.jsonl and a yellow line on the console."""
        self.jsonl.write(json.dumps({"step": step, "time": round(time.time() - self.start, 3), "note": text}) + "\n")
        self.progress.console.print(f"[yellow]{text}[/yellow]")

    def close(self) -> None:
        self.progress.stop()
        self.tb.close()
        self.jsonl.close()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """All records of a ``metrics.jsonl``."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_metrics(metrics_path: Path, out_png: Path, keys: tuple[str, ...]) -> Path | None:
    """One panel per key present in the log, value against step; None if no key is present."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    present = [k for k in keys if any(isinstance(r.get(k), (int, float)) for r in records)]
    if not present:
        return None
    fig, axes = plt.subplots(1, len(present), figsize=(4.2 * len(present), 3.2), squeeze=False)
    for ax, key in zip(axes[0], present):
        points = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
        ax.plot(*zip(*points), marker="." if len(points) < 30 else None)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def save_png(fig, out_png: Path, *, title: str, xlabel: str, ylabel: str, legend_size: int = 8) -> Path:
    """Finish a one-axes figure (labels, grid, legend) and write it to ``out_png`` via a temp file + rename."""
    import matplotlib.pyplot as plt

    ax = fig.axes[0]
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_png.with_name(f".{out_png.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(out_png)
    return out_png
