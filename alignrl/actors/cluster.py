"""Start or join Ray with the environment our workers need."""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import ray

from alignrl.errors import UserError

# Carried to every worker: caches inside the project, the CPU accelerator for DeepSpeed.
_WORKER_ENV_KEYS = (
    "DS_ACCELERATOR", "TORCH_EXTENSIONS_DIR", "VLLM_CACHE_ROOT", "TORCHINDUCTOR_CACHE_DIR", "XDG_CACHE_HOME",
    "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM", "VLLM_ENABLE_V1_MULTIPROCESSING",
    "VLLM_CPU_KVCACHE_SPACE", "PYTHONPATH", "ALIGNRL_MASTER_ADDR", "TRANSFORMERS_VERBOSITY",
    "HF_HUB_DISABLE_PROGRESS_BARS",
)


def worker_env() -> dict[str, str]:
    """Environment variables forwarded to Ray workers (set on the driver, read by workers)."""
    env = {k: os.environ[k] for k in _WORKER_ENV_KEYS if k in os.environ}
    env.setdefault("DS_ACCELERATOR", "cpu" if not _has_cuda() else "cuda")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def free_port() -> int:
    """A free TCP port on the loopback interface (for torch.distributed rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[None]:
    """Use an existing Ray (``address``, or already initialised) or start a private local one.

    A local Ray gets a fresh temp folder so a stale ``ray_current_cluster`` file from an earlier
    ``ray stop`` is never picked up; it is shut down and removed on exit.
    """
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if ray.is_initialized():
        yield
        return
    temp_dir = None
    if address is None:
        temp_dir = tempfile.mkdtemp(prefix="alignrl-ray-", dir="/tmp")
        ray.init(
            num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, _temp_dir=temp_dir,
            runtime_env={"env_vars": worker_env()}, log_to_driver=False, logging_level="ERROR",
        )
    else:  # inside a submitted job, "auto" finds the job's cluster (RAY_ADDRESS is set by the job supervisor)
        ray.init(address=address, runtime_env={"env_vars": worker_env()}, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)


def project_root() -> Path:
    return Path(__file__).resolve().parents[2]


def actor_death_detail(err: BaseException) -> str:
    """Why a Ray actor died, in one line: for a failed ``__init__``, the ``Type: message`` its constructor raised
    (Ray keeps it only as traceback text in the error's message); otherwise the message's first line."""
    lines = str(err).splitlines()
    if getattr(err, "actor_init_failed", False):
        frames = [i for i, line in enumerate(lines) if line.startswith("  File ")]
        tail = [line.strip() for line in lines[frames[-1] + 1:] if line.strip() and not line.startswith("    ")] \
            if frames else []
        if tail:
            text = re.sub(r"^(?:\w+\.)+(\w+:)", r"\1", " ".join(tail))  # alignrl.errors.UserError: -> UserError:
            return "its start failed: " + text
    return lines[0] if lines else type(err).__name__


def task_error_detail(err: BaseException) -> str:
    """``Type: message`` of the exception a Ray task raised (not Ray's multi-line wrapper)."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {str(cause).strip().splitlines()[-1] if str(cause).strip() else ''}"
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


WORKER_RESTARTS = 2  # Ray's max_restarts for rollout, scorer and reward workers: a kill -9 or OOM is survived twice


class WorkerRestarted(UserError):
    """A worker died and Ray restarted it: the call it was running is lost and it holds its starting weights. A loop
    that can redo the call (after syncing current weights) catches this; anywhere else it stops the run cleanly."""

    def __init__(self, who: str, what: str, detail: str) -> None:
        super().__init__(f"{who} died during {what} ({detail}) and was restarted; this call cannot be redone here, "
                         "the run stops (checkpoints written so far are complete)")
        self.who, self.what, self.detail = who, what, detail

    def note(self) -> str:
        """One line for the run's log when the loop recovered."""
        return f"{self.who} died during {self.what} ({self.detail}) and was restarted"


def came_back(actor: Any, timeout_s: float) -> bool:
    """After ``actor`` died: whether Ray restarted it (its constructor ran again) within ``timeout_s``. While it
    restarts, calls fail at once as unavailable: ask again until it answers, is dead for good, or time is up."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            ray.get(actor.__ray_ready__.remote(), timeout=max(0.1, deadline - time.monotonic()))
            return True
        except ray.exceptions.ActorUnavailableError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        except Exception:  # noqa: BLE001 - dead for good (restarts used up), or not back in time
            return False
