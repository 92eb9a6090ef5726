"""Build a generation engine by name: ``"vllm"`` (``VLLMEngine``) or ``"hf"`` (``HFEngine``).

Each engine module is imported only when chosen, so asking for ``"hf"`` never imports vLLM.
"""

from __future__ import annotations

import os
from typing import Any

from alignrl.errors import UserError
from alignrl.rollout.base import GenerationEngine

ENGINES = ("vllm", "hf")


def make_engine(kind: str, model_dir: str | os.PathLike[str], *, dtype: str = "float32",
                seed: int = 0, **kw: Any) -> GenerationEngine:
    """Start the ``kind`` engine on ``model_dir``; ``kw`` goes to the engine's constructor.

    ``seed`` seeds vLLM's engine; the HF engine takes its seeds from each ``SamplingConfig`` only.
    An unknown ``kind`` raises ``UserError`` listing the known ones.
    """
    if kind == "vllm":
        from alignrl.rollout.vllm_engine import VLLMEngine

        return VLLMEngine(model_dir, dtype=dtype, seed=seed, **kw)
    if kind == "hf":
        from alignrl.rollout.hf_engine import HFEngine

        return HFEngine(model_dir, dtype=dtype, **kw)
    raise UserError(f"rollout.engine: {kind!r} is not a generation engine; use one of "
                    f"{', '.join(ENGINES)}.")
