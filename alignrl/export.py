"""``alignrl export``: copy a run's weights out as an HF folder that transformers and vLLM load."""

from __future__ import annotations

import shutil
from pathlib import Path

from alignrl.errors import UserError
from alignrl.io import atomic_dir
from alignrl.models.export import load_hf_weights, save_hf_folder


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """The run's finished checkpoints (``checkpoints/step_N`` folders), oldest first ([] when there are none)."""
    root = run_dir / "checkpoints"
    return sorted(p for p in root.glob("step_*") if p.is_dir()) if root.is_dir() else []


def find_checkpoint(run_dir: Path, checkpoint: str = "latest") -> Path:
    """``run_dir/checkpoints/<checkpoint>``; ``latest`` is the highest step. UserError when absent."""
    root = run_dir / "checkpoints"
    found = checkpoint_dirs(run_dir)
    if not found:
        raise UserError(f"{run_dir}: no checkpoints found under {root}; is this a run folder (runs/NAME)?")
    if checkpoint == "latest":
        return found[-1]
    path = root / checkpoint
    if path not in found:
        raise UserError(f"--checkpoint {checkpoint}: not in {root}; available: {', '.join(p.name for p in found)}")
    return path


WHAT = ("policy", "ema", "lora-merged")


def export_run(run_dir: Path, *, what: str, checkpoint: str, out_dir: Path, overwrite: bool = False,
               anchor: str | None = None, merge: str | None = None, eta: float | None = None) -> Path:
    """Write the ``what`` weights of a checkpoint as an HF folder at ``out_dir`` (atomically).

    what: ``policy`` (the trained weights; LoRA adapters merged in), ``lora-merged`` (the same, for a LoRA run:
    W + s·B·A under the base model's names), ``ema`` (a moving anchor's weights: EMA / Elastic Reset, picked by
    ``anchor`` when the run has several). merge ``liti`` with ``eta``: θ_init + η·(θ − θ_init) with θ_init the
    run's starting policy (WARP's LITI, Ramé et al. 2024, arXiv:2406.16768).
    """
    if what not in WHAT:
        raise UserError(f"--what {what}: use one of {', '.join(WHAT)}")
    if (merge is None) != (eta is None):
        raise UserError("--merge liti needs --eta (and --eta needs --merge liti)")
    if merge not in (None, "liti"):
        raise UserError(f"--merge {merge}: the only interpolation here is liti; merge folders with `alignrl merge`")
    if eta is not None and not 0.0 <= eta <= 1.0:
        raise UserError(f"--eta {eta}: must be in [0, 1] (0: the run's init, 1: the exported weights)")
    ckpt = find_checkpoint(run_dir, checkpoint)
    source = ckpt / "hf"
    if not (source / "config.json").is_file():
        raise UserError(f"{source}: checkpoint has no HF weights (incomplete or from another tool)")
    lora = _recipe(run_dir).get("learner", {}).get("lora") is not None
    if what == "lora-merged" and not lora:
        raise UserError(f"--what lora-merged: {run_dir} trained without LoRA (learner.lora); use --what policy")
    if what != "ema" and merge is None:  # the checkpoint's HF folder already is the (LoRA-merged) policy
        with atomic_dir(out_dir, overwrite=overwrite) as tmp:
            for f in source.iterdir():
                shutil.copy2(f, tmp / f.name)
        return out_dir
    state = _ema_state(ckpt, run_dir, anchor, lora) if what == "ema" else load_hf_weights(source)
    if merge == "liti":
        from alignrl.merging import merge_state_dicts
        from alignrl.merging.liti import LitiParams

        init = load_hf_weights(_init_dir(run_dir))
        missing = sorted(set(state) ^ set(init))
        if missing:
            raise UserError(f"--merge liti: the run's init and the {what} weights differ in tensors (e.g. {missing[0]})")
        state = merge_state_dicts("liti", [state], base={k: init[k] for k in state}, params=LitiParams(eta=eta))
    return save_hf_folder(state, source, out_dir, overwrite=overwrite)


def _recipe(run_dir: Path) -> dict:
    import yaml

    path = run_dir / "recipe.yaml"
    if not path.is_file():
        raise UserError(f"{run_dir}: no recipe.yaml; is this a run folder (runs/NAME)?")
    return yaml.safe_load(path.read_text()) or {}


def _ema_state(ckpt: Path, run_dir: Path, anchor: str | None, lora: bool) -> dict:
    from safetensors.torch import load_file

    files = sorted((ckpt / "anchors").glob("*.safetensors")) if (ckpt / "anchors").is_dir() else []
    if not files:
        raise UserError(f"--what ema: {ckpt} holds no moving anchor (the run has no ema or elastic_reset anchor)")
    names = [f.stem for f in files]
    if anchor is None and len(files) > 1:
        raise UserError(f"--what ema: {run_dir} has several moving anchors ({', '.join(names)}); pick one with --anchor")
    if anchor is not None and anchor not in names:
        raise UserError(f"--anchor {anchor}: not a moving anchor of {run_dir}; it has {', '.join(names)}")
    if lora:
        raise UserError("--what ema: this run trained LoRA adapters, whose EMA is kept on the adapter model; "
                        "exporting it merged is not supported yet (export --what lora-merged for the policy)")
    return load_file(str(files[names.index(anchor)] if anchor else files[0]))


def _init_dir(run_dir: Path) -> Path:
    """The run's starting HF folder: ``run_dir/init`` (a tiny or imported model) or the recipe's policy.path."""
    if (run_dir / "init" / "config.json").is_file():
        return run_dir / "init"
    path = (_recipe(run_dir).get("policy") or {}).get("path")
    if not path or not (Path(path) / "config.json").is_file():
        raise UserError(f"--merge liti: the run's starting model ({path or run_dir / 'init'}) is not an HF folder any "
                        "more; LITI interpolates from it")
    return Path(path)
