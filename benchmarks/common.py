"""Shared helpers: cache folders, interleaved timing, medians with spread, JSON results, rich tables."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache"
BENCH_CACHE = CACHE / "bench"
RESULTS = Path(__file__).resolve().parent / "results"

ENV_DEFAULTS = {
    "TORCH_EXTENSIONS_DIR": CACHE / "torch_extensions",
    "VLLM_CACHE_ROOT": CACHE / "vllm",
    "TORCHINDUCTOR_CACHE_DIR": CACHE / "inductor",
    "XDG_CACHE_HOME": CACHE / "xdg",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "DS_ACCELERATOR": "cpu",
    "RAY_AUTH_MODE": "disabled",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "VLLM_LOGGING_LEVEL": "WARNING",
    "TRANSFORMERS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
}


def setup_env() -> None:
    """Point caches into ``.cache/`` and switch Hub access off, unless the caller set them already."""
    for name, value in ENV_DEFAULTS.items():
        if not os.environ.get(name):
            os.environ[name] = str(value)


def set_threads(n: int) -> None:
    """Give each side ``n`` intra-op threads (0: keep torch's default, one per core).

    Set before torch (and vLLM, which later blocks ``torch.set_num_threads``) is imported. On the
    shared 2-core machine one thread per side keeps another job on the other core from stalling
    OpenMP barriers: with 2 threads a 0.05 s tiny-model call was seen to take up to 3.8 s.
    """
    if n > 0:
        os.environ["OMP_NUM_THREADS"] = str(n)
        import torch

        torch.set_num_threads(n)


def threads() -> int:
    """torch's intra-op thread count now."""
    import torch

    return torch.get_num_threads()


def interleave(runners: dict[str, Callable[[], dict[str, float]]], repeats: int, warmup: int = 1,
               label: str = "") -> dict[str, list[dict[str, float]]]:
    """Call each runner ``warmup`` times (discarded), then ``repeats`` rounds in order A, B, A, B, ...

    A runner returns a dict of measurements for one repeat (e.g. ``{"seconds": .., "tokens": ..}``).
    Returns the kept measurements per runner, in round order, so round ``i`` of A and B are neighbours.
    With a ``label``, each kept measurement is printed to stderr as it comes (slow runs show progress).
    """
    for _ in range(warmup):
        for run in runners.values():
            run()
    kept: dict[str, list[dict[str, float]]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            kept[name].append(run())
            if label:
                shown = ", ".join(f"{k} {v:.4g}" for k, v in kept[name][-1].items())
                print(f"{label} round {len(kept[name])}/{repeats} {name}: {shown}", file=sys.stderr, flush=True)
    return kept


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(wall seconds, result) of one call, on the monotonic performance clock."""
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def spread(values: list[float]) -> dict[str, float]:
    """Median, min, max and relative spread ((max - min) / median) of repeated measurements."""
    med = statistics.median(values)
    return {"median": med, "min": min(values), "max": max(values),
            "rel_spread": (max(values) - min(values)) / med if med else float("nan"), "n": len(values)}


def paired_ratio(num: list[float], den: list[float]) -> dict[str, float]:
    """Spread of the per-round ratios ``num[i] / den[i]`` (neighbouring runs share the machine's load)."""
    return spread([a / b for a, b in zip(num, den, strict=True)])


def machine() -> dict[str, Any]:
    """Where and under what load the numbers were taken (other jobs share the cores)."""
    import torch

    return {"host": platform.node(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "loadavg": list(os.getloadavg()),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def versions(*packages: str) -> dict[str, str]:
    """Installed versions of ``packages`` (distribution names)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in packages:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def write_result(section: str, data: dict[str, Any], out: Path | None = None) -> Path:
    """Write ``data`` (plus the load average at the end) as JSON to ``results/<section>.json`` (a quick run:
    ``<section>_quick.json``, so it never replaces a full run's figures) or ``out``."""
    path = out or RESULTS / f"{section}{'_quick' if data.get('quick') else ''}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {**data, "loadavg_end": list(os.getloadavg())}
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def print_table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    """A small rich table; floats are shown with 3 significant digits (whole numbers from 100 up)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="right" if col != columns[0] else "left", no_wrap=True)
    for row in rows:
        table.add_row(*(_fmt(v) for v in row))
    console = Console()
    console.width = max(console.width, 120)  # piped output defaults to 80 columns
    console.print(table)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"
    return str(v)


class TrainerPacer:
    """Runs a transformers ``Trainer.train()`` in a helper thread that a ``TrainerCallback`` pauses after each
    planned block of steps, so a benchmark can interleave it block by block with our side.

    ``next_block()`` starts the thread the first time (later: releases it), waits for the block and returns its
    step-end timestamps; ``finish()`` releases the last pause and joins. ``n_threads`` sets torch's thread count
    inside the thread (OpenMP keeps it per OS thread); ``threads_seen`` is what torch reported in the loop.
    Subclasses may override ``on_step_end`` to record per-step data.
    """

    def __init__(self, trainer, plan: list[int], *, name: str, n_threads: int | None = None,
                 wait_s: float = 900.0) -> None:
        import threading

        from transformers import TrainerCallback

        pacer = self

        class Callback(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                pacer._step_end()

        trainer.add_callback(Callback())
        self.trainer, self.plan, self.name, self.n_threads, self.wait_s = trainer, list(plan), name, n_threads, wait_s
        self.stamps: list[list[float]] = [[]]
        self.paused, self.go = threading.Event(), threading.Event()
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None
        self.threads_seen = 0

    def on_step_end(self) -> None:
        """Hook for subclasses, called in TRL's thread at each step end."""

    def _step_end(self) -> None:
        import torch

        self.threads_seen = torch.get_num_threads()
        self.on_step_end()
        self.stamps[-1].append(time.perf_counter())
        if len(self.stamps[-1]) == self.plan[len(self.stamps) - 1]:
            self.paused.set()
            if not self.go.wait(self.wait_s):
                raise TimeoutError("benchmark driver stopped releasing the trainer")
            self.go.clear()
            self.stamps.append([])

    def _run(self) -> None:
        import torch

        if self.n_threads:
            torch.set_num_threads(self.n_threads)
        try:
            self.trainer.train()
        except BaseException as err:  # handed to the driver thread
            self.error = err
        finally:
            self.paused.set()

    def next_block(self) -> list[float]:
        """Let the trainer run its next block (starting it the first time); return its step-end stamps."""
        import threading

        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self.thread.start()
        else:
            self.go.set()
        if not self.paused.wait(self.wait_s):
            raise TimeoutError(f"{self.name} did not finish a block in {self.wait_s} s")
        self.paused.clear()
        if self.error is not None:
            raise RuntimeError(f"{self.name} failed: {self.error!r}") from self.error
        return self.stamps[-1]

    def finish(self) -> None:
        """Release the trainer after its last block and wait for ``train()`` to return."""
        if self.thread is None:
            return
        self.go.set()
        self.thread.join(self.wait_s)
        if self.error is not None:
            raise RuntimeError(f"{self.name} failed after its last block: {self.error!r}") from self.error


def interleaved_blocks(our_step, pacer: "TrainerPacer", *, warmup_steps: int, block_steps: int, blocks: int,
                       label: str) -> tuple[list[float], list[float]]:
    """Warm both sides up, then alternate blocks (ours, the peer's, ours, ...); returns each side's seconds per step
    of every block: the time between the ends of its first and last step / (steps − 1). ``our_step()`` takes one
    step of our side; ``pacer`` drives the peer's Trainer (its plan must be [warmup_steps] + [block_steps]·blocks)."""
    import sys

    def ours(steps: int) -> list[float]:
        stamps = []
        for _ in range(steps):
            our_step()
            stamps.append(time.perf_counter())
        return stamps

    def per_step(stamps: list[float]) -> float:
        return (stamps[-1] - stamps[0]) / (len(stamps) - 1)

    pacer.next_block()
    ours(warmup_steps)
    ours_s, peer_s = [], []
    for _ in range(blocks):
        ours_s.append(per_step(ours(block_steps)))
        peer_s.append(per_step(pacer.next_block()))
        print(f"{label} block {len(ours_s)}/{blocks}: ours {ours_s[-1]:.4f} s/step, {pacer.name} {peer_s[-1]:.4f} "
              "s/step", file=sys.stderr, flush=True)
    pacer.finish()
    return ours_s, peer_s
