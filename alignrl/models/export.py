"""Write a full state dict as an HF model folder that transformers and vLLM load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from alignrl.errors import UserError
from alignrl.io import atomic_dir

# Files copied from the template folder (config, tokenizer, chat template, generation defaults).
_NON_WEIGHT_SUFFIXES = (".json", ".jinja", ".txt", ".model")


def save_hf_folder(
    state_dict: dict[str, torch.Tensor], template_dir: str | Path, out_dir: str | Path, *, overwrite: bool = False
) -> Path:
    """Weights as ``model.safetensors`` + the template's config/tokenizer files, written atomically.

    With tied embeddings ``lm_head.weight`` is dropped (safetensors refuses shared tensors, and
    transformers and vLLM re-tie it on load).
    """
    template_dir, out_dir = Path(template_dir), Path(out_dir)
    config = json.loads((template_dir / "config.json").read_text())
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in state_dict.items()}
    if config.get("tie_word_embeddings", False):
        tensors.pop("lm_head.weight", None)
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        for f in template_dir.iterdir():
            if f.is_file() and f.suffix in _NON_WEIGHT_SUFFIXES and not f.name.endswith(".index.json"):
                shutil.copy2(f, tmp / f.name)
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    return out_dir


def load_hf_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of an HF folder's ``model.safetensors`` (or its shards, via the index) on CPU."""
    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        state: dict[str, torch.Tensor] = {}
        for f in sorted(set(json.loads(index.read_text())["weight_map"].values())):
            state.update(load_file(str(folder / f)))
        return state
    if not (folder / "model.safetensors").is_file():
        raise UserError(f"{folder}: no model.safetensors (or sharded index) to read")
    return load_file(str(folder / "model.safetensors"))
