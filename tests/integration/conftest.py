"""Fault injection shared by the resume tests: SIGKILL of a whole job at a chosen moment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def kill_job(recipe: Path, out: Path, name: str, moment: str, *overrides: str, step: int = 2,
             timeout_s: float = 600) -> None:
    """Start ``alignrl run recipe`` in its own process group and SIGKILL the whole group (driver, Ray, every actor)
    at ``moment``: "after_checkpoint" (the checkpoint of ``step`` complete) or "mid_checkpoint" (a checkpoint
    folder of ``step`` or later being written)."""
    proc = subprocess.Popen([sys.executable, "-m", "alignrl", "run", "--no-progress", str(recipe), f"output_dir={out}",
                             f"name={name}", *overrides], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    checkpoints = out / name / "checkpoints"
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if moment == "after_checkpoint" and (checkpoints / f"step_{step:06d}").is_dir():
                break
            if moment == "mid_checkpoint" and any(
                    int(p.name[6:12]) >= step for p in checkpoints.glob(".step_*.tmp-*") if p.name[6:12].isdigit()):
                break
            time.sleep(0.005)
        assert proc.poll() is None, "the run ended before the kill"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def kill_then_resume(recipe: Path, out: Path, moment: str) -> Path:
    """``kill_job`` a run named "killed" at ``moment``, then ``alignrl run --resume`` it to the end. Checks what every
    resume must do: exit 0, one note per interrupted checkpoint it removed, no half-written checkpoint left.
    Returns the run folder."""
    from alignrl.cli import main
    from alignrl.tracking import read_metrics

    kill_job(recipe, out, "killed", moment)
    killed = out / "killed"
    left = [p.name for p in (killed / "checkpoints").glob(".step_*.tmp-*")]
    assert main(["run", "--resume", str(killed), "--no-progress"]) == 0
    notes = [r["note"] for r in read_metrics(killed / "metrics.jsonl") if "note" in r]
    assert len(notes) == len(left) and all(name in note for name, note in zip(left, notes))
    assert not list((killed / "checkpoints").glob(".*"))  # no half-written checkpoint left behind
    return killed


@pytest.fixture
def killed_and_resumed():
    return kill_then_resume
