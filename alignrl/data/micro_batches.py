"""Micro-batches by token budget: rows sorted by length, packed greedily, all-padding columns dropped.

A fixed number of rows per micro-batch pads every row to the longest one of the whole batch. Here
(``learner.micro_batch_tokens``, like verl's ``use_dynamic_bsz`` + ``ppo_max_token_len_per_gpu``) the rows of
a rank's shard are sorted by length and cut into micro-batches whose padded area (rows × width, the width
after ``trim_padding``) stays within a token budget: long rows train in small micro-batches, short rows in
large ones, and no micro-batch computes the padding of another. Only for losses whose rows are independent
(SFT, online RL, distillation); a pairwise loss needs its pairs in one micro-batch.
"""

from __future__ import annotations

import torch

from alignrl.types import RolloutBatch, TokenBatch


def real_spans(attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(first, stop) column of each row's real tokens, from a (B, T) mask (an empty row gives (T, 0))."""
    real = attention_mask.bool()
    cols = torch.arange(real.shape[1], device=real.device).expand_as(real)
    first = torch.where(real, cols, real.shape[1]).min(1).values
    stop = torch.where(real, cols + 1, 0).max(1).values
    return first, stop


def token_budget_groups(attention_mask: torch.Tensor, budget: int) -> list[torch.Tensor]:
    """Row indices of each micro-batch: rows by descending real length, added to the current micro-batch while
    rows × width ≤ ``budget`` (width: from the leftmost first to the rightmost last real column of its rows, what
    ``trim_padding`` keeps); a row wider than the budget gets a micro-batch of its own.

    Sorting by length packs well when rows share an anchor column, as our batches do (prompts left-padded up to
    the response column, responses right-padded; or every row right-padded). Deterministic (a stable sort), so
    every replay of a step forms the same micro-batches.
    """
    first, stop = real_spans(attention_mask)
    order = torch.sort(stop - first, descending=True, stable=True).indices.tolist()
    first, stop = first.tolist(), stop.tolist()
    groups: list[list[int]] = []
    lo = hi = 0
    for i in order:
        if groups:
            new_lo, new_hi = min(lo, first[i]), max(hi, stop[i])
            if (len(groups[-1]) + 1) * max(new_hi - new_lo, 0) <= budget:
                groups[-1].append(i)
                lo, hi = new_lo, new_hi
                continue
        groups.append([i])
        lo, hi = first[i], stop[i]
    return [torch.tensor(sorted(g), dtype=torch.long) for g in groups]


def split_to_count(groups: list[torch.Tensor], count: int) -> list[torch.Tensor]:
    """``groups`` with the largest one halved until there are ``count`` (ranks must run the same number of
    backward passes: ZeRO-2/3 reduce gradients in each one). Needs ``count`` ≤ the number of rows."""
    groups = list(groups)
    if count > sum(len(g) for g in groups):
        raise ValueError(f"cannot split {sum(len(g) for g in groups)} rows into {count} micro-batches")
    while len(groups) < count:
        k = max(range(len(groups)), key=lambda j: len(groups[j]))
        g = groups.pop(k)
        half = len(g) // 2
        groups[k:k] = [g[:half], g[half:]]
    return groups


def trim_padding(batch: TokenBatch | RolloutBatch) -> TokenBatch | RolloutBatch:
    """The batch without the columns that are padding in every row (on the left and the right).

    Row tensors of a RolloutBatch whose second dim is the sequence length (advantages, log-probs, top-k
    ids, ...) are cut alike. Causal attention makes trailing columns irrelevant to earlier ones, and rotary
    positions make a shift of every position by the same amount invisible to attention: the loss is unchanged
    up to float rounding for RoPE models (Llama, Qwen, SmolLM2, ...).
    """
    tokens = batch.tokens if isinstance(batch, RolloutBatch) else batch
    width = tokens.input_ids.shape[1]
    first, stop = real_spans(tokens.attention_mask)
    lo, hi = int(first.min()), int(stop.max())
    if hi <= lo or (lo == 0 and hi == width):
        return batch
    cut = TokenBatch(tokens.input_ids[:, lo:hi], tokens.attention_mask[:, lo:hi], tokens.loss_mask[:, lo:hi])
    if isinstance(batch, TokenBatch):
        return cut
    rows = {k: v[:, lo:hi] if v.ndim >= 2 and v.shape[1] == width else v for k, v in batch.rows.items()}
    return RolloutBatch(cut, rows)
