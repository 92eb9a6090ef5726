"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[1]
# The same environment `make test` sets, so plain `pytest` behaves alike: caches inside the project,
# no hub access, DeepSpeed on its CPU accelerator unless a GPU is present, no Ray token auth locally.
for _key, _value in {
    "TORCH_EXTENSIONS_DIR": str(_ROOT / ".cache" / "torch_extensions"),
    "TORCHINDUCTOR_CACHE_DIR": str(_ROOT / ".cache" / "inductor"),
    "VLLM_CACHE_ROOT": str(_ROOT / ".cache" / "vllm"),
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "RAY_AUTH_MODE": "disabled",
}.items():
    os.environ.setdefault(_key, _value)
if not os.path.exists("/dev/nvidia0"):
    os.environ.setdefault("DS_ACCELERATOR", "cpu")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An HF folder with a tiny Llama (default shape, seed 0), built once per test session."""
    from alignrl.models.tiny import build_tiny_model  # imports transformers: only when used

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def isolated_registries():
    """Snapshot every registry and restore it after the test, so a test may register throwaway entries."""
    from alignrl.registry import ALL_REGISTRIES

    snapshots = [(reg, reg.snapshot()) for reg in ALL_REGISTRIES]
    yield
    for reg, snap in snapshots:
        reg.restore(snap)
