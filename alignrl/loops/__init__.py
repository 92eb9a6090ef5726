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
        return _online_rl_with_restarts(cfg, overwrite=overwrite, show_progress=show_progress, resume=resume)
    raise UserError(f"algorithm.name: {name!r} has no training loop yet (available: sft, preference, bradley_terry and online RL)")


LEARNER_RESTARTS = 2  # a dead learner worker restarts the whole run from its last checkpoint at most this often


def _online_rl_with_restarts(cfg: RunConfig, *, overwrite: bool, show_progress: bool, resume: bool) -> dict:
    """``run_online_rl``; when a learner worker dies, the run goes on from its last checkpoint (exactly as
    ``--resume`` would), or from the start when it has none yet, at most LEARNER_RESTARTS times."""
    import sys

    from alignrl.actors.learner import LearnerLost
    from alignrl.loops.online_rl import run_online_rl

    note = None
    for attempt in range(LEARNER_RESTARTS + 1):
        try:
            return run_online_rl(cfg, overwrite=overwrite, show_progress=show_progress, resume=resume,
                                 start_note=note)
        except LearnerLost as err:
            if attempt == LEARNER_RESTARTS:
                raise UserError(f"{err} (the run was already restarted {LEARNER_RESTARTS} times after a learner "
                                "worker died)") from None
            resume = any((cfg.run_dir / "checkpoints").glob("step_*"))
            overwrite = overwrite or not resume  # no checkpoint yet: this invocation's own folder starts over
            where = "its last checkpoint" if resume else "the start (no checkpoint yet)"
            note = (f"{str(err).split(';')[0]}; the run restarted from {where} "
                    f"(restart {attempt + 1} of {LEARNER_RESTARTS})")
            print(f"alignrl: {note}", file=sys.stderr, flush=True)
    raise AssertionError("unreachable")
