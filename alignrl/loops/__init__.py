"""Single-controller drivers, one per algorithm family; ``run_recipe`` picks one by ``algorithm.name``."""

from __future__ import annotations

from alignrl.config import RunConfig
from alignrl.errors import UserError


def run_recipe(cfg: RunConfig, *, overwrite: bool = False, show_progress: bool = True, resume: bool = False) -> dict:
    """Run the loop that serves ``cfg.algorithm.name``; returns its final metrics. ``resume``: continue
    ``cfg.run_dir`` from its last checkpoint (online RL)."""
    name = cfg.algorithm.name
    if resume and not cfg.is_online_rl:
        raise UserError(f"--resume: continuing a {name} run is not supported yet (online RL runs only)")
    if name == "sft":
        from alignrl.loops.sft import run_sft

        return run_sft(cfg, overwrite=overwrite, show_progress=show_progress)
    if name == "preference":
        from alignrl.loops.preference import run_preference

        return run_preference(cfg, overwrite=overwrite, show_progress=show_progress)
    if name == "bradley_terry":
        from alignrl.loops.reward_model import run_reward_model

        return run_reward_model(cfg, overwrite=overwrite, show_progress=show_progress)
    if cfg.is_online_rl and cfg.warp is not None:
        if resume:
            raise UserError("--resume: a WARP job restarts from its recipe (its finished runs are in its folder)")
        from alignrl.loops.warp import run_warp

        return run_warp(cfg, overwrite=overwrite, show_progress=show_progress)
    if cfg.is_online_rl:
        from alignrl.loops.online_rl import run_online_rl

        return run_online_rl(cfg, overwrite=overwrite, show_progress=show_progress, resume=resume)
    raise UserError(f"algorithm.name: {name!r} has no training loop yet (available: sft, preference, bradley_terry and online RL)")
