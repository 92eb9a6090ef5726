"""Weight sync of a LoRA policy: only the adapters travel; each rollout worker merges them into its base copy.

A full sync sends every weight (135M parameters: 540 MB in fp32) although LoRA changes only the low-rank
factors A (r × in) and B (out × r) of its target layers. Here the learner sends (A, B, scaling) per target and
the base folder's path; the worker reads the base weights of the touched layers from that folder once, then on
each sync rebuilds W = W₀ + scaling · B·A (PEFT's own merge, ``lora.Linear.get_delta_weight``) and loads whole
layers (vLLM rebuilds fused q/k/v and gate/up from one call). Untouched layers (embeddings, final norm) are
never sent again: the engine already holds them, and the learner's LoRA cannot change them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

LORA_BUCKET = "alignrl.lora_adapters.v1"  # marks an adapter bucket (a dict) among full-weight buckets (lists)


def lora_adapter_bucket(peft_model: torch.nn.Module, base_dir: str) -> dict[str, Any] | None:
    """The adapters of a PEFT model as one sync bucket, or None when some adapter is not plain LoRA on a Linear
    (DoRA, LoRA biases, embedding or conv adapters: the caller then sends merged full weights).

    Bucket: {"kind": LORA_BUCKET, "base_dir": str, "adapters": [(base weight name, A, B, scaling, fan_in_fan_out)]}
    with A and B as CPU tensors (views of the live parameters: put it in the object store before the next step).
    """
    from peft.tuners.lora import Linear as LoraLinear
    from peft.tuners.lora import LoraLayer

    prefix = "base_model.model."
    adapters = []
    for name, module in peft_model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        if not isinstance(module, LoraLinear):
            return None
        for adapter in module.active_adapters:
            if adapter in getattr(module, "lora_variant", {}) or module.lora_bias.get(adapter, False):
                return None
            base_name = name.removeprefix(prefix) + ".weight"
            adapters.append((base_name, module.lora_A[adapter].weight.detach().cpu(),
                             module.lora_B[adapter].weight.detach().cpu(), float(module.scaling[adapter]),
                             bool(module.fan_in_fan_out)))
    if not adapters:
        return None
    return {"kind": LORA_BUCKET, "base_dir": str(base_dir), "adapters": adapters}


def is_lora_bucket(bucket: Any) -> bool:
    """Whether a sync bucket holds LoRA adapters (``lora_adapter_bucket``) rather than (name, tensor) pairs."""
    return isinstance(bucket, dict) and bucket.get("kind") == LORA_BUCKET


def bucket_nbytes(bucket: Any) -> int:
    """Bytes of tensor data a sync bucket carries (either kind; numpy transport included)."""
    if is_lora_bucket(bucket):
        return sum(a.numel() * a.element_size() + b.numel() * b.element_size() for _, a, b, _, _ in bucket["adapters"])
    return sum(int(t.nbytes) for _, t, *_ in bucket)


def read_base_layers(base_dir: str | Path, layers: set[str], layer_of) -> dict[str, torch.Tensor]:
    """Every tensor of ``base_dir``'s safetensors (one file or an index of shards) whose ``layer_of(name)`` is in
    ``layers``, in file order."""
    from safetensors import safe_open

    base_dir = Path(base_dir)
    index = base_dir / "model.safetensors.index.json"
    if index.is_file():
        files = list(dict.fromkeys(json.loads(index.read_text())["weight_map"].values()))
    elif (base_dir / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        raise FileNotFoundError(f"LoRA sync: no model.safetensors (or its index) in the base folder {base_dir}")
    out: dict[str, torch.Tensor] = {}
    for file in files:
        with safe_open(str(base_dir / file), framework="pt") as f:
            for name in f.keys():
                if layer_of(name) in layers:
                    out[name] = f.get_tensor(name)
    return out


def merged_layers(base: dict[str, torch.Tensor], adapters: list[tuple], layer_of,
                  out: dict[str, torch.Tensor] | None = None) -> list[tuple[str, torch.Tensor]]:
    """Whole layers of merged weights: each layer touched by an adapter, every tensor of it from ``base`` with the
    targets replaced by W₀ + scaling · transpose(B·A, fan_in_fan_out) in float32 (PEFT's merge, as one ``addmm``).

    ``out``: reusable float32 buffers by target name (filled in place, created on first use): a sync then
    allocates nothing, and fresh memory's page faults cost more than the merge on CPU. Raises ``KeyError``
    naming a target the base lacks (the learner's base folder is another model).
    """
    out = {} if out is None else out
    merged = {}
    for name, a, b, scaling, fan_in_fan_out in adapters:
        if name not in base:
            raise KeyError(f"LoRA sync: the base weights have no {name!r} (the learner's base folder is another model)")
        w0 = base[name].float()
        buf = out.get(name)
        if buf is None or buf.shape != w0.shape:
            buf = out[name] = torch.empty_like(w0)
        left, right = (a.float().T, b.float().T) if fan_in_fan_out else (b.float(), a.float())
        merged[name] = torch.addmm(w0, left, right, alpha=scaling, out=buf)
    touched = {layer_of(name) for name in merged}
    return [(name, merged.get(name, t)) for name, t in base.items() if layer_of(name) in touched]
