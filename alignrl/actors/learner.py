"""LearnerWorker: a Ray actor around one DeepSpeed rank; LearnerGroup: N of them, data parallel."""

from __future__ import annotations

import os
from typing import Any

import ray
import torch

from alignrl.engine.deepspeed_learner import DeepSpeedLearner, LearnerSettings, LossFn
from alignrl.errors import UserError
from alignrl.types import RolloutBatch, TokenBatch


class LearnerLost(UserError):
    """A learner worker died: its DeepSpeed group (a collective) cannot go on without it. A loop that can resume
    from its last checkpoint restarts the run from there (``loops.run_recipe``); otherwise the run stops."""


class LearnerWorker:
    """One DeepSpeed rank. Methods are thin: the work happens in ``engine.deepspeed_learner``."""

    def __init__(self, rank: int, world_size: int, master_port: int) -> None:
        os.environ.update({
            "MASTER_ADDR": os.environ.get("ALIGNRL_MASTER_ADDR", "127.0.0.1"), "MASTER_PORT": str(master_port),
            "RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": "0",
        })
        threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
        if threads > 0:
            torch.set_num_threads(threads)
        self.learner: DeepSpeedLearner | None = None

    def setup(self, settings: LearnerSettings, moving_anchors: list | None = None) -> None:
        self.learner = DeepSpeedLearner(settings)
        self.learner.setup(moving_anchors)

    def train_step(self, shard: TokenBatch, loss_fn: LossFn) -> dict[str, float]:
        return self.learner.train_step(shard, loss_fn)

    def begin_step(self) -> None:
        self.learner.begin_step()

    def micro_step(self, micro: TokenBatch | RolloutBatch, weight: float, loss_fn: LossFn, last: bool) -> bool:
        return self.learner.micro_step(micro, weight, loss_fn, last=last, fill_anchors=True)

    def end_step(self) -> dict[str, float]:
        return self.learner.end_step()

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        return self.learner.full_state_dict()

    def save_engine_state(self, directory: str, tag: str) -> None:
        self.learner.save_engine_state(directory, tag)

    def load_engine_state(self, directory: str, tag: str, steps_taken: int) -> None:
        self.learner.load_engine_state(directory, tag, steps_taken)

    def forward_values(self, shard: TokenBatch) -> torch.Tensor:
        return self.learner.forward_values(shard)

    def forward_scores(self, shard: TokenBatch, member: int | None = None) -> torch.Tensor:
        return self.learner.forward_scores(shard, member)

    def member_state_dicts(self) -> list:
        return self.learner.member_state_dicts() if self.learner.rank == 0 else []

    def forward_logp_sums(self, shard: TokenBatch, anchor: str | None = None) -> torch.Tensor:
        return self.learner.forward_logp_sums(shard, anchor)

    def forward_pair_logp_sums(self, shard: RolloutBatch) -> torch.Tensor:
        return self.learner.forward_pair_logp_sums(shard)

    def anchor_states(self) -> dict:
        states = self.learner.anchor_states()  # every rank calls in: under ZeRO-3 this gathers
        return states if self.learner.rank == 0 else {}

    def load_anchor_states(self, states: dict) -> None:
        self.learner.load_anchor_states(states)

    def weight_bucket_refs(self, bucket_bytes: int) -> list[ray.ObjectRef]:
        """Gather full weights (collective) and, on rank 0, put them in the object store in whole-layer
        buckets; other ranks return []. A LoRA policy puts only its adapters (one bucket; no collective)."""
        from alignrl.actors.rollout import distinct_tensors, to_transport, weight_buckets

        adapters = self.learner.lora_adapter_bucket()
        if adapters is not None:
            return [ray.put(adapters)] if self.learner.rank == 0 else []
        state = self.learner.full_state_dict(copy=False)  # ray.put copies: no copy of our own before it
        if self.learner.rank != 0:
            return []
        return [ray.put(to_transport(bucket)) for bucket in weight_buckets(distinct_tensors(state), bucket_bytes)]


class LearnerGroup:
    """N learner actors placed by resource request; splits each batch into equal data-parallel shards."""

    def __init__(self, settings: LearnerSettings, *, cpus_per_worker: float, gpus_per_worker: float = 0.0,
                 moving_anchors: list | None = None, extra_bundle: dict | None = None) -> None:
        """``extra_bundle``: resources added to each worker's placement-group bundle for colocated actors
        (``bundle(i)`` places one there)."""
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        from alignrl.actors.cluster import free_port

        self.settings = settings
        n = settings.world_size
        bundle = {"CPU": cpus_per_worker, **({"GPU": gpus_per_worker} if gpus_per_worker else {})}
        for key, value in (extra_bundle or {}).items():
            bundle[key] = bundle.get(key, 0) + value
        self._pg = placement_group([bundle] * n, strategy="PACK")
        if not self._pg.wait(timeout_seconds=60):
            raise UserError(
                f"learner: Ray could not place {n} worker(s) with {bundle} each within 60 s; "
                f"lower learner.workers or learner.cpus_per_worker (cluster has {ray.cluster_resources()})"
            )
        port = free_port()
        remote_cls = ray.remote(LearnerWorker)
        self.workers = [
            remote_cls.options(
                num_cpus=cpus_per_worker, num_gpus=gpus_per_worker,
                scheduling_strategy=PlacementGroupSchedulingStrategy(self._pg, placement_group_bundle_index=i),
            ).remote(i, n, port)
            for i in range(n)
        ]
        self._call("setup", [(settings, moving_anchors)] * n)

    def _call(self, method: str, args_per_worker: list[tuple[Any, ...]]) -> list[Any]:
        return self._gather(method, [getattr(w, method).remote(*args) for w, args in zip(self.workers, args_per_worker)])

    def _gather(self, method: str, refs: list[ray.ObjectRef]) -> list[Any]:
        """The results of ``refs`` (calls of ``method`` on the workers); a dead worker or a failed call stops the run
        with a message naming it."""
        try:
            return ray.get(refs)
        except ray.exceptions.RayActorError as err:
            dead = [i for i, r in enumerate(refs) if _died(r)]
            raise LearnerLost(
                f"learner worker(s) {dead or '?'} died during {method} ({type(err).__name__}); the run stops here. "
                "Check the Ray worker logs (often out of memory: lower learner.micro_batch_size); "
                "checkpoints written so far are complete"
            ) from None
        except ray.exceptions.RayTaskError as err:
            from alignrl.actors.cluster import task_error_detail

            if isinstance(getattr(err, "cause", None), UserError):
                raise UserError(str(err.cause)) from None
            raise UserError(f"learner {method} failed in a worker: {task_error_detail(err)}; the run stops here, checkpoints "
                            "written so far are complete (full traceback in the Ray worker logs)") from None

    def train_step(self, batch: TokenBatch, loss_fn: LossFn) -> dict[str, float]:
        """Split the batch into equal shards, one per rank; return metrics averaged over ranks."""
        n = len(self.workers)
        size = len(batch) // n
        shards = [(batch.slice(i * size, (i + 1) * size), loss_fn) for i in range(n)]
        results = self._call("train_step", shards)
        return {k: sum(r[k] for r in results) / n for k in results[0]}

    def begin_step(self) -> "StreamedStep":
        """An optimizer step whose micro-batches are sent one at a time, as their rows become ready
        (``StreamedStep``); the calls queue on each worker in order, so this returns at once."""
        return StreamedStep(self, [w.begin_step.remote() for w in self.workers])

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """Full weights from rank 0 (every rank calls in, as ZeRO-3 gathering is a collective)."""
        return self._call("full_state_dict", [()] * len(self.workers))[0]

    def save_engine_state(self, directory: str, tag: str) -> None:
        self._call("save_engine_state", [(directory, tag)] * len(self.workers))

    def weight_bucket_refs(self, bucket_bytes: int) -> list[ray.ObjectRef]:
        """Full weights as object-store buckets of whole layers (rank 0's; every rank joins the gather)."""
        return self._call("weight_bucket_refs", [(bucket_bytes,)] * len(self.workers))[0]

    def load_engine_state(self, directory: str, tag: str, steps_taken: int) -> None:
        self._call("load_engine_state", [(directory, tag, steps_taken)] * len(self.workers))

    def forward_values(self, batch: TokenBatch) -> torch.Tensor:
        """(B, T) critic values, the batch split over the ranks like ``train_step``."""
        n = len(self.workers)
        size = len(batch) // n
        return torch.cat(self._call("forward_values", [(batch.slice(i * size, (i + 1) * size),) for i in range(n)]))

    def forward_logp_sums(self, batch: TokenBatch, anchor: str | None = None) -> torch.Tensor:
        """(B,) sequence log-prob sums over the loss mask under the current policy (or the hosted ``anchor``),
        split over the ranks."""
        return torch.cat(self._call("forward_logp_sums", [(s, anchor) for s in _equal_shards(batch, len(self.workers))]
                                    ))[:len(batch)]

    def forward_pair_logp_sums(self, batch: RolloutBatch) -> torch.Tensor:
        """(P, 2) chosen and rejected log-prob sums of shared-prompt rows (``data/shared_prompt``), split over the
        ranks."""
        return torch.cat(self._call("forward_pair_logp_sums", [(s,) for s in _equal_shards(batch, len(self.workers))]
                                    ))[:len(batch)]

    def member_state_dicts(self) -> list[dict[str, torch.Tensor]]:
        """A LoRA reward ensemble's members as HF state dicts (rank 0's)."""
        return self._call("member_state_dicts", [()] * len(self.workers))[0]

    def forward_scores(self, batch: TokenBatch, member: int | None = None) -> torch.Tensor:
        """(B,) reward-model scores (of LoRA-ensemble member ``member``), the batch split over the ranks."""
        return torch.cat(self._call("forward_scores", [(s, member) for s in _equal_shards(batch, len(self.workers))]
                                    ))[:len(batch)]

    def anchor_states(self) -> dict:
        return self._call("anchor_states", [()] * len(self.workers))[0]

    def load_anchor_states(self, states: dict) -> None:
        self._call("load_anchor_states", [(states,)] * len(self.workers))

    def bundle(self, index: int) -> tuple:
        """(placement group, bundle index) of learner worker ``index``, to colocate another actor with it."""
        return self._pg, index

    def shutdown(self) -> None:
        from ray.util.placement_group import remove_placement_group

        for w in self.workers:
            ray.kill(w)
        remove_placement_group(self._pg)


class StreamedStep:
    """One optimizer step fed micro-batch by micro-batch: rank r's micro-batch m (rows ``m·mbs`` to ``(m+1)·mbs`` of
    its contiguous shard, as ``train_step`` cuts them) is sent with ``send`` once its rows exist; ``finish`` waits
    for every rank's last one and returns the metrics averaged over ranks, as ``train_step`` does. Each rank gets
    its micro-batches in order and as many as every other (ZeRO reduces in every backward)."""

    def __init__(self, group: LearnerGroup, refs: list[ray.ObjectRef]) -> None:
        s = group.settings
        self.group, self.refs = group, list(refs)
        self.per_rank = s.accumulation_steps
        self.sent = [0] * len(group.workers)

    def send(self, rank: int, micro: TokenBatch | RolloutBatch, loss_fn: LossFn) -> None:
        """Rank ``rank``'s next micro-batch (``micro_batch_size`` rows)."""
        m = self.sent[rank]
        if m >= self.per_rank or len(micro) != self.group.settings.micro_batch_size:
            raise ValueError(f"rank {rank}: micro-batch {m} of {self.per_rank} with {len(micro)} rows")
        worker = self.group.workers[rank]
        self.refs.append(worker.micro_step.remote(micro, 1.0 / self.per_rank, loss_fn, m == self.per_rank - 1))
        self.sent[rank] += 1

    def finish(self) -> dict[str, float]:
        if any(m != self.per_rank for m in self.sent):
            raise ValueError(f"micro-batches sent per rank {self.sent}, expected {self.per_rank} each")
        ends = [w.end_step.remote() for w in self.group.workers]
        results = self.group._gather("train_step", self.refs + ends)[len(self.refs):]
        n = len(results)
        return {k: sum(r[k] for r in results) / n for k in results[0]}


def _died(ref: ray.ObjectRef) -> bool:
    """True when the actor behind ``ref`` is dead (a pending or merely failing call is not)."""
    try:
        ray.get(ref, timeout=10)
        return False
    except ray.exceptions.RayActorError:
        return True
    except Exception:
        return False


def _equal_shards(batch: TokenBatch | RolloutBatch, n: int) -> list:
    """``batch`` in ``n`` equal contiguous shards, its last row repeated to fill the last one (callers drop the
    outputs past ``len(batch)``): every rank must run the same number of forwards, as ZeRO-3 gathers are collective."""
    size = -(-len(batch) // n)
    if size * n != len(batch):
        index = torch.cat([torch.arange(len(batch)), torch.full((size * n - len(batch),), len(batch) - 1)])
        batch = batch.select(index)
    return [batch.slice(i * size, (i + 1) * size) for i in range(n)]
