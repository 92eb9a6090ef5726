"""RolloutWorker: a Ray actor owning one generation engine; RolloutGroup: N of them splitting the prompts.

Weight sync: the learner's full state dict is cut into buckets of whole layers (``weight_buckets``) of at
most ``bucket_bytes`` each; each bucket is put in the object store once and every worker loads it with one
call (``load_bucket``), so a sync costs one call per bucket per worker, never one per tensor, and no disk
round trip. vLLM rebuilds fused layers (qkv, gate_up) from the tensors of one call, hence whole layers.
A LoRA policy sends only its adapters (``actors/lora_sync``); the worker merges them into its base copy.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from typing import Any

import ray
import torch

from alignrl.actors.cluster import WORKER_RESTARTS, WorkerRestarted, actor_death_detail, came_back, task_error_detail
from alignrl.actors.lora_sync import bucket_nbytes, is_lora_bucket, merged_layers, read_base_layers
from alignrl.errors import UserError
from alignrl.rollout.base import Completion, SamplingConfig

START_TIMEOUT_S = 300
_LAYER = re.compile(r"^(.*?\.layers\.\d+)\.")


def layer_key(name: str) -> str:
    """The group a tensor syncs with: its decoder layer (``model.layers.3``) or its own module."""
    m = _LAYER.match(name)
    return m.group(1) if m else name.rpartition(".")[0]


_NUMPY_VIEW = {torch.bfloat16: torch.int16}  # dtypes numpy lacks travel as a same-width integer view


def to_transport(bucket: list[tuple[str, torch.Tensor]]) -> list[tuple[str, Any, str]]:
    """A bucket as (name, numpy array, torch dtype name): Ray puts numpy arrays into the object store with one copy
    and workers read them in place (zero copy), while a pickled torch tensor is copied into a byte string first."""
    out = []
    for name, t in bucket:
        t = t.detach().contiguous()
        out.append((name, t.view(_NUMPY_VIEW.get(t.dtype, t.dtype)).numpy(), str(t.dtype).removeprefix("torch.")))
    return out


def from_transport(bucket: list[tuple[str, Any, str]]) -> list[tuple[str, torch.Tensor]]:
    """The inverse of ``to_transport``: tensors viewing the (read-only) object-store memory, for engines that copy
    them into their own parameters."""
    import warnings

    out = []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not writable.*")  # read only here; the engine copies
        for name, array, dtype in bucket:
            out.append((name, torch.from_numpy(array).view(getattr(torch, dtype))))
    return out


def distinct_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` without tensors that share storage with an earlier one (tied embeddings: ``lm_head.weight`` is
    ``model.embed_tokens.weight``; both engines tie them again when the first is loaded)."""
    seen, out = set(), {}
    for name, t in state.items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if key not in seen:
            seen.add(key)
            out[name] = t
    return out


def weight_buckets(state: dict[str, torch.Tensor], bucket_bytes: int) -> list[list[tuple[str, torch.Tensor]]]:
    """Greedy packing of whole layers, in state-dict order, into buckets of at most ``bucket_bytes``
    (a single layer larger than that gets a bucket of its own)."""
    groups: dict[str, list[tuple[str, torch.Tensor]]] = {}
    for name, t in state.items():
        groups.setdefault(layer_key(name), []).append((name, t))
    buckets: list[list[tuple[str, torch.Tensor]]] = []
    size = 0
    for group in groups.values():
        nbytes = sum(t.numel() * t.element_size() for _, t in group)
        if not buckets or size + nbytes > bucket_bytes:
            buckets.append([])
            size = 0
        buckets[-1].extend(group)
        size += nbytes
    return buckets


class StaleWeights(RuntimeError):
    """A rollout worker was asked to generate with weights it does not hold (it was restarted since)."""


class RolloutWorker:
    """One generation engine in its own process (in-process vLLM needs a process of its own)."""

    def __init__(self, kind: str, model_dir: str, seed: int, engine_kw: dict[str, Any]) -> None:
        threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
        if threads > 0:
            torch.set_num_threads(threads)
        from alignrl.rollout.factory import make_engine

        self.engine = make_engine(kind, model_dir, seed=seed, **engine_kw)
        self.version = 0  # the weight sync it holds; a worker Ray restarted is back at 0 (the starting weights)

    def generate(self, prompts: list[str], sampling: SamplingConfig, version: int | None = None
                 ) -> list[list[Completion]]:
        """Completions with the weights of sync ``version`` (refused with ``StaleWeights`` if it holds others)."""
        if version is not None and version != self.version:
            raise StaleWeights(f"holds the weights of sync {self.version}, not {version}: Ray restarted it")
        return self.engine.generate(prompts, sampling)

    def load_bucket(self, bucket: Any, version: int | None = None) -> tuple[float, int]:
        """Load one bucket in place: (name, tensor) pairs, their numpy transport, or LoRA adapters to merge into
        the base layers; it then holds sync ``version``. Returns the seconds it took inside the worker and the
        bytes of tensor data received."""
        if version is not None:
            self.version = version
        start = time.perf_counter()
        nbytes = bucket_nbytes(bucket)
        if is_lora_bucket(bucket):
            base = self._lora_base_layers(bucket)
            self.engine.load_weights(merged_layers(base, bucket["adapters"], layer_key, out=self._lora_merged))
        else:
            if bucket and len(bucket[0]) == 3:  # (name, array, dtype): sent by to_transport
                bucket = from_transport(bucket)
            self.engine.load_weights(bucket)
        return time.perf_counter() - start, nbytes

    def _lora_base_layers(self, bucket: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The base weights of the layers the adapters touch, read from the learner's base folder on first use."""
        layers = {layer_key(name) for name, *_ in bucket["adapters"]}
        cached = getattr(self, "_lora_base", None)
        if cached is None or cached[0] != bucket["base_dir"] or not layers <= cached[1]:
            self._lora_base = (bucket["base_dir"], layers, read_base_layers(bucket["base_dir"], layers, layer_key))
            self._lora_merged: dict[str, torch.Tensor] = {}  # merge buffers, reused by every later sync
        return self._lora_base[2]

    def close(self) -> None:
        self.engine.close()


class RolloutGroup:
    """N rollout actors; ``generate`` splits prompts into N contiguous parts and joins the results in order
    (one list of ``sampling.n`` completions per prompt, like ``GenerationEngine.generate``)."""

    def __init__(self, kind: str, model_dir: str, *, workers: int, seed: int, cpus_per_worker: float,
                 gpus_per_worker: float = 0.0, engine_kw: dict[str, Any] | None = None,
                 bundles: list[tuple[Any, int]] | None = None) -> None:
        """``bundles``: (placement group, bundle index) per worker to colocate with the learner; else each
        worker is placed by its own resource request."""
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        remote_cls = ray.remote(RolloutWorker)
        self.workers = []
        for i in range(workers):
            options: dict[str, Any] = {"num_cpus": cpus_per_worker, "num_gpus": gpus_per_worker,
                                       "max_restarts": WORKER_RESTARTS}
            if bundles is not None:
                pg, index = bundles[i]
                options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=index)
            # Each worker gets its own seed so samples differ across workers.
            self.workers.append(remote_cls.options(**options).remote(kind, model_dir, seed + 1000 * i, engine_kw or {}))
        refs = [w.__ray_ready__.remote() for w in self.workers]
        ready, pending = ray.wait(refs, num_returns=len(refs), timeout=START_TIMEOUT_S)
        if pending:
            raise UserError(f"{len(pending)} rollout worker(s) did not start within {START_TIMEOUT_S} s; each asks for "
                            f"{cpus_per_worker} CPU and {gpus_per_worker} GPU, free now: {ray.available_resources()}. "
                            "Lower rollout.cpus_per_worker or rollout.workers, or add nodes")
        self._get(ready, "start")  # engine built, or its error
        self.version = 0  # the weight sync every worker holds (0: the model folder's weights)

    def _get(self, refs: list[ray.ObjectRef], what: str) -> list[Any]:
        try:
            return ray.get(refs)
        except ray.exceptions.RayActorError as err:
            restarted = not getattr(err, "actor_init_failed", False) and all(came_back(w, START_TIMEOUT_S)
                                                                             for w in self.workers)
            if restarted:
                which = [i for i, w in enumerate(self.workers) if w._actor_id.hex() == getattr(err, "actor_id", None)]
                raise WorkerRestarted(f"rollout worker {which[0] if which else '?'}", what,
                                      actor_death_detail(err)) from None
            dead = [i for i, w in enumerate(self.workers) if not _alive(w)]
            if getattr(err, "actor_init_failed", False):
                raise UserError(f"rollout worker(s) {dead or '?'}: {actor_death_detail(err)} (rollout.engine, "
                                "rollout.kv_cache_gib and the policy's max_position_embeddings decide the engine's "
                                "memory)") from None
            raise UserError(
                f"rollout worker(s) {dead or '?'} died during {what}: {actor_death_detail(err)} and did not come back "
                f"(restarted {WORKER_RESTARTS} times already); the run stops here, checkpoints written so far are "
                "complete. Check the Ray worker logs (often out of memory: lower rollout.kv_cache_gib or "
                "rollout.workers)"
            ) from None
        except ray.exceptions.RayTaskError as err:
            if isinstance(getattr(err, "cause", None), StaleWeights):  # it died while idle; Ray brought it back
                raise WorkerRestarted("a rollout worker", "an earlier step", f"it {err.cause}") from None
            raise UserError(f"rollout {what} failed in a worker: {task_error_detail(err)} (full traceback in the Ray "
                            "worker logs)") from None

    def generate(self, prompts: list[str], sampling: SamplingConfig) -> list[list[Completion]]:
        refs = [ref for _, _, ref in self.generate_parts(prompts, sampling)]
        return [group for part in self._get(refs, "generate") for group in part]  # one list per prompt

    def generate_parts(self, prompts: list[str], sampling: SamplingConfig) -> list[tuple[int, int, ray.ObjectRef]]:
        """Start generating: prompts ``start:stop`` on worker i (contiguous parts, one per worker with prompts);
        returns (start, stop, ref) per part, for a caller that handles each part as it completes."""
        n = len(self.workers)
        bounds = [len(prompts) * i // n for i in range(n + 1)]
        parts = []
        for i, w in enumerate(self.workers):
            if bounds[i + 1] > bounds[i]:
                seeded = dataclasses.replace(sampling, seed=sampling.seed + 7919 * i)
                parts.append((bounds[i], bounds[i + 1], w.generate.remote(prompts[bounds[i]:bounds[i + 1]], seeded,
                                                                          self.version)))
        return parts

    def next_part(self, pending: dict[ray.ObjectRef, Any]) -> tuple[Any, list[list[Completion]]]:
        """Wait for the first finished part among ``pending`` (ref → key), remove it, return (key, its groups)."""
        (ref,), _ = ray.wait(list(pending), num_returns=1)
        return pending.pop(ref), self._get([ref], "generate")[0]

    def load_buckets(self, bucket_refs: list[ray.ObjectRef]) -> dict[str, float]:
        """Push every bucket to every worker (one call per bucket and worker); returns timing metrics."""
        start = time.perf_counter()
        self.version += 1  # a sync that fails part-way is redone whole, under the next number
        inner = self._get([w.load_bucket.remote(ref, self.version) for ref in bucket_refs for w in self.workers],
                          "weight sync")
        n = len(self.workers)
        engine_s = max((sum(s for s, _ in inner[w::n]) for w in range(n)), default=0.0)  # the busiest worker's
        return {"sync/load_s": time.perf_counter() - start, "sync/engine_s": engine_s,
                "sync/buckets": float(len(bucket_refs)), "sync/mb": sum(b for _, b in inner[::n]) / 2**20}

    def shutdown(self) -> None:
        for w in self.workers:
            try:
                ray.get(w.close.remote(), timeout=30)
            except Exception:  # noqa: BLE001 - a dead worker needs no closing
                pass
            ray.kill(w)


def _alive(actor: Any) -> bool:
    try:
        ray.get(actor.__ray_ready__.remote(), timeout=5)
        return True
    except Exception:  # noqa: BLE001
        return False
