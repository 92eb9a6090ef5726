"""``alignrl merge``: merge HF model folders tensor by tensor with a registered merge operator and write an
HF folder (safetensors, config, tokenizer) atomically.

The config (``merge_config.py``) is mergekit's schema; each mergekit method maps onto one of our pure
operators (``alignrl/merging``) with the per-tensor parameters that mergekit would use:

    linear           -> linear(weights, normalize)                     (base ignored unless listed, as mergekit)
    slerp            -> slerp([base, other], t)                         (t = 0: base)
    task_arithmetic  -> task_arithmetic(weights [/ Σw if normalize], λ)
    ties             -> ties(per-model density, weights, λ, normalize)
    dare_linear/ties -> dare(per-model drop = 1 − density, rescale l1 | none, normalize, seed per tensor)
    model_stock      -> model_stock(filter_wise)
    liti             -> liti([other], base, η)                          (ours: WARP's θ_init + η·(θ − θ_init))

DARE's masks come from a generator seeded by ``random_seed`` and the tensor's name (mergekit draws from the
global RNG), so a merge is reproducible but not bit-identical to mergekit's for density < 1.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch

from alignrl.errors import UserError
from alignrl.io import atomic_dir
from alignrl.merge_config import MergeConfig, MergeInput, layer_position, parameter
from alignrl.merging import key_seed
from alignrl.models.loading import DTYPES
from alignrl.registry import MERGES

TOKENIZER_FILES = ("tokenizer_config.json", "special_tokens_map.json", "tokenizer.json", "tokenizer.model",
                   "added_tokens.json", "merges.txt", "vocab.json", "vocab.txt", "chat_template.jinja",
                   "chat_template.json", "generation_config.json")
MAX_SHARD = "5GB"


class TensorReader:
    """Lazy access to one HF folder's tensors (single or sharded safetensors)."""

    def __init__(self, folder: Path, stack: ExitStack) -> None:
        from safetensors import safe_open

        index = folder / "model.safetensors.index.json"
        if index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
            files = sorted(set(weight_map.values()))
        elif (folder / "model.safetensors").is_file():
            files, weight_map = ["model.safetensors"], None
        else:
            raise UserError(f"{folder}: no model.safetensors (or sharded index) to merge; convert .bin weights by "
                            "loading and saving the model with transformers first")
        handles = {f: stack.enter_context(safe_open(str(folder / f), framework="pt")) for f in files}
        self.where = weight_map or {k: files[0] for k in handles[files[0]].keys()}
        self.handles, self.folder = handles, folder

    def names(self) -> list[str]:
        return list(self.where)

    def get(self, name: str) -> torch.Tensor:
        return self.handles[self.where[name]].get_tensor(name)


def _op_call(cfg: MergeConfig, name: str, x: float, base: torch.Tensor | None,
             others: list[tuple[MergeInput, torch.Tensor]]) -> tuple[str, list[torch.Tensor], torch.Tensor | None, Any]:
    """(operator, tensors, base, params) for one tensor under ``cfg``'s method (module docstring)."""
    method = cfg.merge_method
    tensors = [t for _, t in others]

    def each(param: str) -> list[float]:
        return [float(parameter(cfg, param, name, x, m)) for m, _ in others]

    def shared(param: str) -> Any:
        return parameter(cfg, param, name, x)

    params_cls = MERGES.entry({"dare_linear": "dare", "dare_ties": "dare"}.get(method, method)).params
    if method == "linear":
        return "linear", tensors, None, params_cls(weights=tuple(each("weight")), normalize=bool(shared("normalize")))
    if method == "slerp":
        return "slerp", [base, tensors[0]], None, params_cls(t=float(shared("t")))
    if method == "liti":
        return "liti", tensors, base, params_cls(eta=float(shared("eta")))
    if method == "model_stock":
        return "model_stock", tensors, base, params_cls(filter_wise=bool(shared("filter_wise")))
    weights, lam = each("weight"), float(shared("lambda"))
    if method == "task_arithmetic":
        if shared("normalize"):
            total = sum(weights)
            weights = [w / (total if abs(total) >= 1e-8 else 1.0) for w in weights]
        return "task_arithmetic", tensors, base, params_cls(weights=tuple(weights), lam=lam)
    densities = each("density")
    if method == "ties":
        return "ties", tensors, base, params_cls(density=tuple(min(1.0, max(0.0, d)) for d in densities),
                                                 weights=tuple(weights), lam=lam, normalize=bool(shared("normalize")))
    if any(d <= 0.0 for d in densities):
        raise UserError(f"{cfg.source}: {method}: density {min(densities)} for tensor {name} drops every coordinate; "
                        "use a density in (0, 1]")
    return "dare", tensors, base, params_cls(
        drop=tuple(1.0 - min(1.0, d) for d in densities), variant="linear" if method == "dare_linear" else "ties",
        weights=tuple(weights), lam=lam, rescale="l1" if shared("rescale") else "none",
        normalize=bool(shared("normalize")), seed=key_seed(cfg.random_seed, name))


def _check_tokenizers(cfg: MergeConfig) -> Path:
    """The folder whose tokenizer is copied; every input must share it (token ids must mean the same)."""
    from alignrl.models.loading import check_same_tokenizer

    donor = Path(cfg.base_model or cfg.models[0].model)
    source = donor if cfg.tokenizer_source in (None, "base", "union") else Path(cfg.tokenizer_source)
    for m in cfg.inputs:
        if Path(m.model) != source:
            check_same_tokenizer(source, m.model)
    return source


def merged_tensors(cfg: MergeConfig, readers: dict[str, TensorReader], num_layers: int,
                   compute: torch.dtype | None) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, merged tensor) for every tensor of the config donor, in its order."""
    donor = readers[cfg.base_model or cfg.models[0].model]
    names = donor.names()
    for m in cfg.inputs:
        missing = sorted(set(names) ^ set(readers[m.model].names()))
        if missing:
            raise UserError(f"{m.model} ({m.key}) and {donor.folder} do not have the same tensors (e.g. {missing[0]}); "
                            "merge models of one architecture and size")
    # linear is a soup: the base (listed, or appended as mergekit does) is one more weighted ingredient
    others_in = list(cfg.inputs) if cfg.merge_method == "linear" else [m for m in cfg.inputs if m.model != cfg.base_model]
    for name in names:
        def load(model: str) -> torch.Tensor:
            t = readers[model].get(name)
            return t.to(compute) if compute is not None and t.is_floating_point() else t

        base = load(cfg.base_model) if cfg.base_model is not None else None
        others = [(m, load(m.model)) for m in others_in]
        first = others[0][1]
        if not first.is_floating_point():
            if not all(torch.equal(first, t) for _, t in others):
                raise UserError(f"tensor {name}: non-floating values differ between the inputs; cannot merge them")
            yield name, first
            continue
        op, tensors, op_base, params = _op_call(cfg, name, layer_position(name, num_layers), base, others)
        yield name, MERGES.entry(op).fn(tensors, op_base, params)


def merge_models(cfg: MergeConfig, out_dir: Path, *, overwrite: bool = False) -> Path:
    """Merge ``cfg``'s models into the HF folder ``out_dir`` (written atomically); returns ``out_dir``."""
    from huggingface_hub import split_torch_state_dict_into_shards
    from safetensors.torch import save_file

    tokenizer_dir = _check_tokenizers(cfg)
    donor = Path(cfg.base_model or cfg.models[0].model)
    config = json.loads((donor / "config.json").read_text())
    num_layers = int(config.get("num_hidden_layers") or config.get("text_config", {}).get("num_hidden_layers", 1))
    compute = DTYPES[cfg.dtype] if cfg.dtype else None
    save_dtype = DTYPES.get(cfg.out_dtype or cfg.dtype or "")
    with ExitStack() as stack:
        readers = {m.model: TensorReader(Path(m.model), stack) for m in cfg.inputs}
        merged = {}
        for name, tensor in merged_tensors(cfg, readers, num_layers, compute):
            cast = save_dtype if save_dtype is not None and tensor.is_floating_point() else tensor.dtype
            merged[name] = tensor.to(cast).contiguous()
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        split = split_torch_state_dict_into_shards(merged, max_shard_size=MAX_SHARD)
        for filename, names in split.filename_to_tensors.items():
            save_file({n: merged[n] for n in names}, str(tmp / filename), metadata={"format": "pt"})
        if split.is_sharded:
            index = {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in merged.values())},
                     "weight_map": split.tensor_to_filename}
            (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
        if save_dtype is not None:
            key = "torch_dtype" if "torch_dtype" in config and "dtype" not in config else "dtype"
            config[key] = str(save_dtype).removeprefix("torch.")
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        for f in TOKENIZER_FILES:
            if (tokenizer_dir / f).is_file():
                shutil.copy2(tokenizer_dir / f, tmp / f)
        if cfg.source is not None:
            shutil.copy2(cfg.source, tmp / "merge_config.yaml")
    return out_dir
