"""``alignrl export``: copy a run's weights out as an HF folder that transformers and vLLM load."""

from __future__ import annotations

import shutil
from pathlib import Path

from alignrl.errors import UserError
from alignrl.io import atomic_dir


def find_checkpoint(run_dir: Path, checkpoint: str = "latest") -> Path:
    """``run_dir/checkpoints/<checkpoint>``; ``latest`` is the highest step. UserError when absent."""
    root = run_dir / "checkpoints"
    found = sorted(p for p in root.glob("step_*") if p.is_dir()) if root.is_dir() else []
    if not found:
        raise UserError(f"{run_dir}: no checkpoints found under {root}; is this a run folder (runs/NAME)?")
    if checkpoint == "latest":
        return found[-1]
    path = root / checkpoint
    if path not in found:
        raise UserError(f"--checkpoint {checkpoint}: not in {root}; available: {', '.join(p.name for p in found)}")
    return path


def export_run(run_dir: Path, *, what: str, checkpoint: str, out_dir: Path, overwrite: bool = False) -> Path:
    """Copy the ``what`` weights of a checkpoint (HF layout) to ``out_dir`` atomically."""
    if what != "policy":
        raise UserError(f"--what {what}: this run has only 'policy' weights")
    source = find_checkpoint(run_dir, checkpoint) / "hf"
    if not (source / "config.json").is_file():
        raise UserError(f"{source}: checkpoint has no HF weights (incomplete or from another tool)")
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        for f in source.iterdir():
            shutil.copy2(f, tmp / f.name)
    return out_dir
