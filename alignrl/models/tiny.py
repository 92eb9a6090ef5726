"""Tiny Llama models built from config, for tests and CPU demos (no download).

A character-level tokenizer (one token per printable ASCII character, so any printable text
round-trips exactly) and a randomly initialised ``LlamaForCausalLM`` saved as an ordinary HF folder
that transformers, vLLM, TRL and DeepSpeed load like any other model. With the defaults (hidden 128,
2 layers, 4 heads) the model has about 0.4M parameters.
"""

from __future__ import annotations

import os
import string
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from alignrl.errors import UserError
from alignrl.io import atomic_dir

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)  # ids 0..3, in this order
DEFAULT_CHARS = "".join(c for c in string.printable if c not in "\x0b\x0c\r")  # 97 characters

# "<s>user: hi\nassistant: hello</s>\n"; EOS closes assistant turns so a tuned model learns to stop.
# The newline is an expression: transformers renders with trim_blocks, which eats "\n" after a tag.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ message['role'] }}: {{ message['content'] }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}{{ '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


def build_tiny_tokenizer(chars: str | None = None) -> PreTrainedTokenizerFast:
    """A character-level tokenizer: ``<pad> <s> </s> <unk>`` then one token per character.

    ``chars`` defaults to printable ASCII without ``\\x0b\\x0c\\r``. Encoding prepends ``<s>``;
    characters outside ``chars`` become ``<unk>``. Padding is on the left (batched generation).
    ``decode(encode(text), skip_special_tokens=True) == text`` for any text made of ``chars``.
    """
    chars = DEFAULT_CHARS if chars is None else chars
    _check_chars(chars)
    vocab = {token: i for i, token in enumerate((*SPECIALS, *chars))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")  # every character
    backend.decoder = decoders.Fuse()  # join tokens with nothing between them
    backend.add_special_tokens(list(SPECIALS))  # "<s>" in text is one token, not 3 characters
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B:1", special_tokens=[(BOS, vocab[BOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        padding_side="left",
        clean_up_tokenization_spaces=False,  # would turn "a ." into "a." on decode
        chat_template=CHAT_TEMPLATE,
    )


def build_tiny_model(
    out_dir: str | os.PathLike[str],
    *,
    hidden: int = 128,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int | None = None,
    intermediate: int | None = None,
    max_positions: int = 256,
    chars: str | None = None,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write a randomly initialised float32 Llama model with the tiny tokenizer to ``out_dir``.

    ``kv_heads`` defaults to ``heads`` (no grouped-query attention), ``intermediate`` to
    ``2 * hidden``. The same arguments and ``seed`` give bit-identical weights. The folder (weights
    in safetensors, config, generation config, tokenizer with chat template) is written atomically;
    an existing non-empty ``out_dir`` raises ``UserError`` unless ``overwrite`` is true.
    Returns the absolute path of the folder.
    """
    kv_heads = heads if kv_heads is None else kv_heads
    intermediate = 2 * hidden if intermediate is None else intermediate
    _check_shape(hidden, layers, heads, kv_heads, intermediate, max_positions)
    tokenizer = build_tiny_tokenizer(chars)
    tokenizer.model_max_length = max_positions
    ids = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=False,
        dtype="float32",
        **ids,
    )
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(**ids)
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        model.save_pretrained(tmp)  # safetensors
        tokenizer.save_pretrained(tmp)
    return Path(out_dir).absolute()


def _check_chars(chars: str) -> None:
    if not chars:
        raise UserError("--chars is empty; give the characters the tokenizer should know.")
    repeated = sorted({c for c in chars if chars.count(c) > 1})
    if repeated:
        raise UserError(f"--chars repeats {''.join(repeated)!r}; list each character once.")


def _check_shape(hidden: int, layers: int, heads: int, kv_heads: int, intermediate: int, max_positions: int) -> None:
    sizes = {
        "--hidden": hidden,
        "--layers": layers,
        "--heads": heads,
        "--kv-heads": kv_heads,
        "--intermediate": intermediate,
        "--max-positions": max_positions,
    }
    for flag, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"{flag} {value!r} must be a positive integer.")
    if hidden % heads:
        raise UserError(f"--hidden {hidden} is not divisible by --heads {heads}.")
    if heads % kv_heads:
        raise UserError(f"--heads {heads} is not divisible by --kv-heads {kv_heads}.")
    if (hidden // heads) % 2:
        raise UserError(
            f"--hidden {hidden} / --heads {heads} gives head size {hidden // heads}; "
            "rotary embeddings need an even head size."
        )
