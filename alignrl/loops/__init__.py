"""Single-controller drivers, one per algorithm family; ``run_recipe`` picks one by ``algorithm.name``."""

from __future__ import annotations

import sys
from collections.abc import Callable

from alignrl.config import RunConfig
from alignrl.errors import UserError


def run_recipe(cfg: RunConfig, *, overwrite: bool = False, show_progress: bool = True, resume: bool = False) -> dict:
    """Run the loop that serves ``cfg.algorithm.name``; returns its final metrics. ``resume``: continue
    ``cfg.run_dir`` from its last checkpoint. A learner worker that dies restarts the run from its last checkpoint
    (``with_learner_restarts``)."""
    name = cfg.algorithm.name
    if name == "sft":
        from alignrl.loops.sft import run_sft as loop
    elif name == "preference":
        from alignrl.loops.preference import run_preference as loop
    elif name == "bradley_terry":
        from alignrl.loops.reward_model import run_reward_model as loop
    elif cfg.is_online_rl and cfg.warp is not None:
        from alignrl.loops.warp import run_warp as loop
    elif cfg.is_online_rl:
        from alignrl.loops.online_rl import run_online_rl as loop
    else:
        raise UserError(f"algorithm.name: {name!r} has no training loop yet (available: sft, preference, bradley_terry "
                        "and online RL)")
    if cfg.warp is not None:  # each of its RL runs restarts on its own (loops.warp); the job resumes them
        return loop(cfg, overwrite=overwrite, show_progress=show_progress, resume=resume)
    return with_learner_restarts(loop, cfg, overwrite=overwrite, show_progress=show_progress, resume=resume)


LEARNER_RESTARTS = 2  # a dead learner worker restarts the whole run from its last checkpoint at most this often


def with_learner_restarts(loop: Callable[..., dict], cfg: RunConfig, *, overwrite: bool, show_progress: bool,
                          resume: bool) -> dict:
    """``loop(cfg, ...)``; when a learner worker dies, the run goes on from its last checkpoint (exactly as
    ``--resume`` would), or from the start when it has none yet, at most LEARNER_RESTARTS times. The loop notes
    ``start_note`` in its metrics.jsonl."""
    from alignrl.actors.learner import LearnerLost
    from alignrl.loops.common import has_checkpoint

    note = None
    for attempt in range(LEARNER_RESTARTS + 1):
        try:
            return loop(cfg, overwrite=overwrite, show_progress=show_progress, resume=resume, start_note=note)
        except LearnerLost as err:
            if attempt == LEARNER_RESTARTS:
                raise UserError(f"{err} (the run was already restarted {LEARNER_RESTARTS} times after a learner "
                                "worker died)") from None
            resume = has_checkpoint(cfg.run_dir) or _is_ensemble(cfg)
            overwrite = overwrite or not resume  # no checkpoint yet: this invocation's own folder starts over
            where = "its last checkpoint" if resume else "the start (no checkpoint yet)"
            note = (f"{str(err).split(';')[0]}; the run restarted from {where} "
                    f"(restart {attempt + 1} of {LEARNER_RESTARTS})")
            print(f"alignrl: {note}", file=sys.stderr, flush=True)
    raise AssertionError("unreachable")


def _is_ensemble(cfg: RunConfig) -> bool:
    """A reward-model ensemble of full models: its members are runs of their own, each resumed or restarted."""
    return cfg.algorithm.name == "bradley_terry" and cfg.algorithm.params.members > 1 and cfg.learner.lora is None
