"""Turn prompt/completion text into padded ``TokenBatch`` tensors for teacher-forced training."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignrl.types import TokenBatch


@dataclass(frozen=True, slots=True)
class TokenizedExample:
    ids: tuple[int, ...]       # prompt ids (with BOS if the tokenizer adds one) + completion ids + eos
    n_prompt: int              # leading positions that are prompt, not targets


def tokenize_sft(tokenizer, prompt: str, completion: str, max_length: int) -> TokenizedExample:
    """prompt → ids with special tokens, completion → ids without, then eos; prompt cut from the left.

    The completion is never cut: an example whose completion alone exceeds ``max_length`` raises,
    since training on half an answer teaches the wrong stop.
    """
    prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    if len(completion_ids) >= max_length:
        raise ValueError(f"completion of {len(completion_ids)} tokens does not fit train.max_length={max_length}")
    keep = max_length - len(completion_ids)
    prompt_ids = prompt_ids[-keep:]
    return TokenizedExample(tuple(prompt_ids + completion_ids), len(prompt_ids))


def tokenize_scored(tokenizer, prompt: str, completion: str, max_length: int, *,
                    prompt_messages=None, completion_messages=None) -> TokenizedExample:
    """A prompt and completion as a reward model reads them: plain text like ``tokenize_sft`` (ids + eos), or,
    when either side is a conversation, the whole conversation through the tokenizer's chat template."""
    if prompt_messages is None and completion_messages is None:
        return tokenize_sft(tokenizer, prompt, completion, max_length)
    head = list(prompt_messages or [{"role": "user", "content": prompt}])
    reply = list(completion_messages or [{"role": "assistant", "content": completion}])
    n_prompt = len(tokenizer.apply_chat_template(head, tokenize=True, add_generation_prompt=True, return_dict=False))
    ids = tokenizer.apply_chat_template(head + reply, tokenize=True, return_dict=False)
    if len(ids) > max_length:
        raise ValueError(f"{len(ids)} tokens with the chat template; more than max_length={max_length}")
    return TokenizedExample(tuple(ids), n_prompt)


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
