"""Turn prompt/completion text into padded ``TokenBatch`` tensors for teacher-forced training."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignrl.types import TokenBatch


@dataclass(frozen=True, slots=True)
class TokenizedExample:
    ids: tuple[int, ...]       # prompt ids (with BOS if the tokenizer adds one) + completion ids + eos
    n_prompt: int              # leading positions that are prompt, not targets


TRUNCATION_MODES = ("prompt_left", "keep_start", "error")


def truncate(ids: list[int], n_prompt: int, max_length: int, truncation: str = "prompt_left",
             max_prompt_length: int | None = None) -> TokenizedExample:
    """Fit prompt ids ``ids[:n_prompt]`` + completion ids ``ids[n_prompt:]`` into ``max_length`` tokens.

    First the prompt keeps its last ``max_prompt_length`` tokens (when set). Then, if still too long:
    ``prompt_left`` drops prompt tokens from the left (the completion is never cut: training on half an answer
    teaches the wrong stop, so a completion that alone does not fit raises); ``keep_start`` keeps the first
    ``max_length`` tokens, cutting the completion's end (TRL's ``truncation_mode="keep_start"``); ``error`` raises.
    """
    if truncation not in TRUNCATION_MODES:
        raise ValueError(f"truncation must be one of {TRUNCATION_MODES}, got {truncation!r}")
    if max_prompt_length is not None and n_prompt > max_prompt_length:
        ids, n_prompt = ids[n_prompt - max_prompt_length:], max_prompt_length
    if len(ids) <= max_length:
        return TokenizedExample(tuple(ids), n_prompt)
    n_completion = len(ids) - n_prompt
    if truncation == "error":
        raise ValueError(f"{len(ids)} tokens ({n_prompt} prompt + {n_completion} completion), more than "
                         f"max_length={max_length} (train.truncation: error)")
    if truncation == "keep_start":
        if n_prompt >= max_length:
            raise ValueError(f"the prompt alone has {n_prompt} tokens; with train.truncation: keep_start no completion "
                             f"token fits max_length={max_length}; set train.max_prompt_length")
        return TokenizedExample(tuple(ids[:max_length]), n_prompt)
    if n_completion >= max_length:
        raise ValueError(f"completion of {n_completion} tokens does not fit max_length={max_length}")
    drop = len(ids) - max_length
    return TokenizedExample(tuple(ids[drop:]), n_prompt - drop)


def tokenize_sft(tokenizer, prompt: str, completion: str, max_length: int, truncation: str = "prompt_left",
                 max_prompt_length: int | None = None) -> TokenizedExample:
    """prompt → ids with special tokens, completion → ids without, then eos; fitted by ``truncate``."""
    prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return truncate(prompt_ids + completion_ids, len(prompt_ids), max_length, truncation, max_prompt_length)


def tokenize_scored(tokenizer, prompt: str, completion: str, max_length: int, *,
                    prompt_messages=None, completion_messages=None, truncation: str = "prompt_left",
                    max_prompt_length: int | None = None) -> TokenizedExample:
    """A prompt and completion as a reward model reads them: plain text like ``tokenize_sft`` (ids + eos), or,
    when either side is a conversation, the whole conversation through the tokenizer's chat template (the prompt
    is the template's rendering up to the generation prompt); fitted by ``truncate``."""
    if prompt_messages is None and completion_messages is None:
        return tokenize_sft(tokenizer, prompt, completion, max_length, truncation, max_prompt_length)
    head = list(prompt_messages or [{"role": "user", "content": prompt}])
    reply = list(completion_messages or [{"role": "assistant", "content": completion}])
    n_prompt = len(tokenizer.apply_chat_template(head, tokenize=True, add_generation_prompt=True, return_dict=False))
    ids = tokenizer.apply_chat_template(head + reply, tokenize=True, return_dict=False)
    return truncate(list(ids), n_prompt, max_length, truncation, max_prompt_length)


def collate_sft(examples: list[TokenizedExample], pad_id: int) -> TokenBatch:
    """Right-pad to the longest example; loss_mask is True on completion tokens and eos."""
    width = max(len(e.ids) for e in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(examples), width), dtype=torch.long)
    loss_mask = torch.zeros((len(examples), width), dtype=torch.bool)
    for row, e in enumerate(examples):
        input_ids[row, : len(e.ids)] = torch.tensor(e.ids)
        attention[row, : len(e.ids)] = 1
        loss_mask[row, e.n_prompt : len(e.ids)] = True
    return TokenBatch(input_ids, attention, loss_mask)
