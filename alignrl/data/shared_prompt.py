"""Shared-prompt rows for preference pairs: one row per pair, the prompt computed once for both responses.

Row layout (widths S, C, R are the batch's longest shared prefix, chosen and rejected tail):

    [ pad … shared prompt | chosen tail, pad … | rejected tail, pad … ]
      left-padded to S      right-padded to C    right-padded to R

The shared prefix is the longest common prefix of the two sides' prompt ids (the whole prompt unless truncation
or a chat template made them differ); each tail is the rest of its side (any unshared prompt ids, then the
response). Position ids restart at the prefix length for both tails, and an attention mask lets the rejected
tail see the prefix but not the chosen tail, so each response is scored exactly as in its own row. With the
prompt left-padded, the last prefix token sits at column S − 1 in every row, so only the logits of columns
S − 1 … end are needed (``logits_to_keep``): the prompt's vocabulary projections are skipped as well.
Prefix sharing for DPO: Wang et al. 2024, "Accelerating Direct Preference Optimization with Prefix Sharing",
arXiv:2410.13224 (they report 1.1–1.6× on long-prompt data).
"""

from __future__ import annotations

import torch

from alignrl.data.collate import TokenizedExample
from alignrl.types import RolloutBatch, TokenBatch

PAD, SHARED, CHOSEN, REJECTED = 0, 1, 2, 3


def shared_prefix_length(chosen: TokenizedExample, rejected: TokenizedExample) -> int:
    """Longest common prefix of the two sides' prompt ids."""
    n = 0
    for a, b in zip(chosen.ids[: chosen.n_prompt], rejected.ids[: rejected.n_prompt]):
        if a != b:
            break
        n += 1
    return n


def collate_shared_prompt(pairs: list[tuple[TokenizedExample, TokenizedExample]], pad_id: int) -> RolloutBatch:
    """One row per pair in the layout above. ``tokens.loss_mask`` marks both responses' target tokens;
    ``rows``: ``segment`` (P, T) codes PAD/SHARED/CHOSEN/REJECTED, ``position_ids`` (P, T), and the layout
    widths ``shared_width`` and ``chosen_width`` (P,) (equal in every row)."""
    prefixes = [shared_prefix_length(c, r) for c, r in pairs]
    s_width = max(prefixes)
    c_width = max(len(c.ids) - n for (c, _), n in zip(pairs, prefixes))
    r_width = max(len(r.ids) - n for (_, r), n in zip(pairs, prefixes))
    width = s_width + c_width + r_width
    rows = len(pairs)
    input_ids = torch.full((rows, width), pad_id, dtype=torch.long)
    segment = torch.full((rows, width), PAD, dtype=torch.int8)
    position_ids = torch.zeros((rows, width), dtype=torch.long)
    loss_mask = torch.zeros((rows, width), dtype=torch.bool)
    for row, ((chosen, rejected), n) in enumerate(zip(pairs, prefixes)):
        start = s_width - n
        input_ids[row, start:s_width] = torch.tensor(chosen.ids[:n], dtype=torch.long)
        segment[row, start:s_width] = SHARED
        position_ids[row, start:s_width] = torch.arange(n)
        for side, code, offset in ((chosen, CHOSEN, s_width), (rejected, REJECTED, s_width + c_width)):
            tail = side.ids[n:]
            cols = slice(offset, offset + len(tail))
            input_ids[row, cols] = torch.tensor(tail, dtype=torch.long)
            segment[row, cols] = code
            position_ids[row, cols] = torch.arange(n, n + len(tail))
            first_target = max(side.n_prompt, 1)  # position 0 of a sequence is never predicted
            targets = torch.arange(n, n + len(tail)) >= first_target
            loss_mask[row, cols] = targets
    tokens = TokenBatch(input_ids, (segment != PAD).long(), loss_mask)
    return RolloutBatch(tokens, {"segment": segment, "position_ids": position_ids,
                                 "shared_width": torch.full((rows,), s_width, dtype=torch.long),
                                 "chosen_width": torch.full((rows,), c_width, dtype=torch.long)})


def shared_prompt_attention(segment: torch.Tensor) -> torch.Tensor:
    """(P, 1, T, T) bool, True where query column q may attend key column k: k ≤ q, both real tokens, and the key
    is in the shared prefix or in the query's own tail. A padding query attends to itself only (an all-False row
    would give NaN in softmax)."""
    t = segment.shape[1]
    causal = torch.ones(t, t, dtype=torch.bool, device=segment.device).tril()
    q, k = segment[:, :, None], segment[:, None, :]
    allowed = causal & (q != PAD) & ((k == SHARED) | (k == q))
    allowed |= torch.eye(t, dtype=torch.bool, device=segment.device)
    return allowed[:, None]


def _mask_for(model, allowed: torch.Tensor) -> torch.Tensor:
    """The 4-D mask in the form the model's attention takes: bool for SDPA, additive float for eager."""
    inner = getattr(model, "module", model)  # a DeepSpeed engine wraps the model
    impl = getattr(getattr(inner, "config", None), "_attn_implementation", "sdpa") or "sdpa"
    if impl == "sdpa":
        return allowed
    if impl == "eager":
        dtype = next(inner.parameters()).dtype
        return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(
            ~allowed, torch.finfo(dtype).min)
    raise ValueError(f"shared-prompt rows need sdpa or eager attention, the model uses {impl}; set "
                     "algorithm.shared_prompt: false")


def shared_prompt_token_logps(model, micro: RolloutBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log π(y_t | x, y_<t) of the chosen and rejected responses of shared-prompt rows.

    Returns (P, T) log-probs aligned with ``micro.tokens.input_ids`` (0 where no target), and (P, 2) sums:
    column 0 the chosen response's, column 1 the rejected's (over ``loss_mask``)."""
    from alignrl.ops.logprobs import selective_log_softmax

    t = micro.tokens
    segment = micro.rows["segment"]
    s_width, c_width = int(micro.rows["shared_width"][0]), int(micro.rows["chosen_width"][0])
    width = t.input_ids.shape[1]
    first_kept = max(s_width - 1, 0)
    logits = model(input_ids=t.input_ids, attention_mask=_mask_for(model, shared_prompt_attention(segment)),
                   position_ids=micro.rows["position_ids"], logits_to_keep=width - first_kept).logits
    # tail column j is predicted by column j − 1, except the rejected tail's first column, predicted by the
    # prefix's last column S − 1; without a prefix (S = 0) a tail's first token is position 0, never a target
    source = torch.arange(s_width - 1, width - 1, device=logits.device)
    source[c_width] = s_width - 1
    logp = selective_log_softmax(logits[:, source.clamp(min=0) - first_kept], t.input_ids[:, s_width:])
    logp = torch.nn.functional.pad(logp.float(), (s_width, 0)) * t.loss_mask
    sums = torch.stack([(logp * (segment == CHOSEN)).sum(1), (logp * (segment == REJECTED)).sum(1)], dim=1)
    return logp, sums
