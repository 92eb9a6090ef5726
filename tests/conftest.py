"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An HF folder with a tiny Llama (default shape, seed 0), built once per test session."""
    from alignrl.models.tiny import build_tiny_model  # imports transformers: only when used

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")
