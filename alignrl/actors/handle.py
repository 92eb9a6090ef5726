"""A handle on one Ray actor started by resource request, whose start-up timeout, death and task errors become
``UserError``s naming it (the ScorerWorker and RewardWorker handles share it)."""

from __future__ import annotations

from typing import Any

import ray

from alignrl.actors.cluster import WORKER_RESTARTS, WorkerRestarted, actor_death_detail, came_back, task_error_detail
from alignrl.errors import UserError

START_TIMEOUT_S = 180


class ActorHandle:
    """Starts ``actor_cls(*args)`` with ``cpus``/``gpus`` and waits until it is up; ``kind`` names it in errors and
    ``hint`` says which recipe keys lower its request."""

    kind = "actor"
    hint = "add nodes"

    def __init__(self, name: str, actor_cls: type, args: tuple[Any, ...], *, cpus: float, gpus: float = 0.0) -> None:
        self.name = name
        self.actor = ray.remote(actor_cls).options(num_cpus=cpus, num_gpus=gpus,
                                                   max_restarts=WORKER_RESTARTS).remote(*args)
        ready, _ = ray.wait([self.actor.__ray_ready__.remote()], timeout=START_TIMEOUT_S)
        if not ready:
            ray.kill(self.actor)
            raise UserError(f"{self.kind} {name!r} could not start within {START_TIMEOUT_S} s: it asks for {cpus} CPU "
                            f"and {gpus} GPU; free now: {ray.available_resources()}. {self.hint}")
        self.get(ready[0], "start")

    def get(self, ref: ray.ObjectRef, what: str):
        try:
            return ray.get(ref)
        except ray.exceptions.RayActorError as err:
            if not getattr(err, "actor_init_failed", False) and came_back(self.actor, START_TIMEOUT_S):
                raise WorkerRestarted(f"{self.kind} {self.name!r}", what, actor_death_detail(err)) from None
            raise UserError(f"{self.kind} {self.name!r} died during {what}: {actor_death_detail(err)} (restarted "
                            f"{WORKER_RESTARTS} times already, or its start failed); the run stops here, checkpoints "
                            "written so far are complete") from None
        except ray.exceptions.RayTaskError as err:
            cause = getattr(err, "cause", None)
            if isinstance(cause, UserError):
                raise UserError(f"{self.kind} {self.name!r}: {cause}") from None
            raise UserError(f"{self.kind} {self.name!r}: {what} failed: {task_error_detail(err)}") from None

    def shutdown(self) -> None:
        ray.kill(self.actor)
