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


@pytest.fixture
def kill_job_at():
    return kill_job
