"""Checks on model paths that need no heavy imports (used by the recipe loader and the loaders)."""

from __future__ import annotations

import os
from pathlib import Path

MAKE_A_MODEL = "Build one with `alignrl models tiny --out DIR` or import a GGUF with `alignrl models import-gguf FILE --out DIR`"


def model_dir_problem(path: str | os.PathLike[str], weights: bool = True) -> str | None:
    """What is wrong with ``path`` as an HF model folder ("does not exist", ...), or None if it is one.
    ``weights``: it must hold safetensors weights (pickled ``.bin``/``.pt`` ones are never loaded)."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        return "does not exist" if not folder.exists() else "is not a folder"
    if not (folder / "config.json").is_file():
        return "is not an HF model folder (no config.json)"
    if weights and not any(folder.glob("*.safetensors")):
        pickled = sorted(p.name for p in folder.glob("*.bin")) + sorted(p.name for p in folder.glob("*.pt"))
        why = f" (only {pickled[0]}, a pickle, which alignrl does not load: it can run code)" if pickled else ""
        return f"has no .safetensors weights{why}; save it with model.save_pretrained(folder) (safetensors by default)"
    return None
