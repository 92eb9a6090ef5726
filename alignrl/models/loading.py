"""Load HF model folders (tokenizer, causal LM) with the checks and settings the loops rely on.

Every loader checks the folder first and raises ``UserError`` naming the recipe key (for example
``policy.path``) and how to make a valid folder, instead of a Hub lookup error from transformers.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from alignrl.errors import UserError
from alignrl.models.paths import MAKE_A_MODEL, model_dir_problem

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def torch_dtype(name: str, key: str = "dtype") -> torch.dtype:
    """The torch dtype called ``name`` (float32, bfloat16 or float16); ``UserError`` otherwise."""
    if name not in DTYPES:
        raise UserError(f"{key}: {name!r} is not a known dtype; use one of {', '.join(DTYPES)}.")
    return DTYPES[name]


def check_model_dir(path: str | os.PathLike[str], key: str = "policy.path", weights: bool = True) -> Path:
    """Return ``path`` as an absolute Path if it is an HF model folder (with safetensors weights unless
    ``weights`` is False); ``UserError`` otherwise."""
    folder = Path(path).expanduser().absolute()
    problem = model_dir_problem(folder, weights)
    if problem is None:
        return folder
    raise UserError(f"{key}: {folder} {problem}. {MAKE_A_MODEL}.")


def load_tokenizer(path: str | os.PathLike[str], key: str = "policy.path") -> PreTrainedTokenizerBase:
    """The folder's tokenizer, padding on the left; a missing pad token is set to the EOS token."""
    tokenizer = AutoTokenizer.from_pretrained(check_model_dir(path, key, weights=False))
    tokenizer.padding_side = "left"  # batched generation appends after the last prompt token
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise UserError(f"{key}: the tokenizer in {path} has neither a pad nor an EOS token.")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(path: str | os.PathLike[str], dtype: str = "float32", key: str = "policy.path") -> PreTrainedModel:
    """The folder's causal LM in ``dtype`` (float32, bfloat16 or float16), on CPU, in eval mode."""
    folder = check_model_dir(path, key)
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype(dtype, f"{key} dtype"),
                                                use_safetensors=True)


def check_same_tokenizer(path_a: str | os.PathLike[str], path_b: str | os.PathLike[str]) -> None:
    """Raise ``UserError`` unless the two folders' tokenizers map the same strings to the same ids.

    Models that share log-probs or logits (policy and reference, student and teacher, merge
    inputs) must agree on token ids; a mismatch would compare unrelated tokens silently.
    """
    vocab_a = AutoTokenizer.from_pretrained(check_model_dir(path_a, "model", weights=False)).get_vocab()
    vocab_b = AutoTokenizer.from_pretrained(check_model_dir(path_b, "model", weights=False)).get_vocab()
    if vocab_a == vocab_b:
        return
    differing = sorted(t for t in vocab_a.keys() | vocab_b.keys() if vocab_a.get(t) != vocab_b.get(t))
    raise UserError(
        f"the tokenizers of {path_a} ({len(vocab_a)} tokens) and {path_b} ({len(vocab_b)} tokens) "
        f"differ in {len(differing)} tokens, e.g. {differing[:5]}; use models with the same tokenizer."
    )
