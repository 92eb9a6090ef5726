"""Sequence packing for the learner: a micro-batch's sequences packed into few rows, no compute on padding.

A padded micro-batch of B rows, each as wide as the longest (T), computes B·T token slots; its sequences hold
N ≤ B·T real tokens. Here the sequences are packed best-fit-decreasing into R rows of width W = the longest
sequence (so no packed row attends over more than a padded row would), with position ids restarting at 0 for
each sequence, no 2-D attention mask and no KV cache: transformers reads the restarts as sequence boundaries (its
``find_packed_sequence_indices``) and masks attention block-diagonally with SDPA and eager attention, or runs
flash-attn's varlen kernels. The forward computes R·W ≈ N slots and gives the same logits as the padded forward
(rotary positions are shift-invariant, so a left-padded row's offset does not matter). The logits are put back
in the micro-batch's (B, T, ...) layout (one ``index_select``), so every loss runs unchanged.

Like OpenRLHF's ``packing_samples``, verl's ``use_remove_padding`` and TRL's ``padding_free``, which need
flash-attn (a GPU); here SDPA on CPU works too. With SDPA or eager, each packed row still computes a dense
W × W attention, as a padded row does; the linear layers shrink by the padding fraction. Putting the logits back
costs a copy of B·T × V values (and its gradient's scatter). On CPU, packing matches a token budget with a small
vocabulary and lands a little behind it with SmolLM2's 49k (benchmarks/packing_step.py). The flash-attn path is transformers' own and
unchecked here (no GPU). Only for models whose output at a token depends on that token's sequence alone (causal
LMs, per-token value heads), not sequence classifiers that read the last non-pad column.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch


def pack_bins(lengths: list[int], width: int) -> list[list[int]]:
    """Sequence indices of each packed row: best-fit decreasing (longest first, each into the fullest row it
    still fits; a new row when none has room). Deterministic; every length must be ≤ ``width``."""
    if any(n > width for n in lengths):
        raise ValueError(f"a sequence of {max(lengths)} tokens does not fit a packed row of width {width}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    free: list[int] = []
    for i in order:
        fits = [b for b in range(len(bins)) if free[b] >= lengths[i]]
        if fits:
            best = min(fits, key=lambda b: free[b])
            bins[best].append(i)
            free[best] -= lengths[i]
        else:
            bins.append([i])
            free.append(width - lengths[i])
    return bins


@dataclass(frozen=True, slots=True)
class PackedRows:
    """A micro-batch's sequences packed into rows, and where each slot of the padded layout reads from."""

    input_ids: torch.Tensor     # (R, W) long, pad id 0 on unused slots
    position_ids: torch.Tensor  # (R, W) long, restarting at 0 for each sequence (unused slots: one more sequence)
    gather: torch.Tensor        # (B·T,) long: the flat packed slot each padded slot reads (padding: any slot)
    batch_shape: tuple[int, int]  # (B, T)

    def unpack(self, packed: torch.Tensor) -> torch.Tensor:
        """(R, W, ...) per-slot outputs in the (B, T, ...) layout (differentiable). Padding slots get some packed
        slot's output (finite; what a padded forward gives there is just as arbitrary, and losses mask it): one
        ``index_select``, no zero-filled copy of a (B, T, V) tensor."""
        flat = packed.reshape(-1, *packed.shape[2:])
        return flat.index_select(0, self.gather).view(*self.batch_shape, *packed.shape[2:])

    @property
    def area(self) -> int:
        """Token slots the packed forward computes (R · W)."""
        return self.input_ids.numel()


def pack_sequences(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> PackedRows:
    """Pack each row's real tokens (``attention_mask`` 1, one contiguous span per row, left or right padded) into
    rows as wide as the longest sequence."""
    real = attention_mask.bool()
    b, t = real.shape
    lengths = real.sum(1)
    cols = torch.arange(t, device=real.device).expand(b, t)
    first = torch.where(real, cols, t).min(1).values
    stop = torch.where(real, cols + 1, 0).max(1).values
    if bool(((stop - first).clamp(min=0) != lengths).any()):
        raise ValueError("sequence packing needs each row's real tokens in one contiguous span (left or right "
                         "padding); a row has padding between real tokens")
    lengths_list, first_list = lengths.tolist(), first.tolist()
    width = max(max(lengths_list), 1)
    bins = pack_bins(lengths_list, width)
    rows = len(bins)
    ids = torch.zeros((rows, width), dtype=input_ids.dtype)
    positions = torch.zeros((rows, width), dtype=torch.long)
    gather = torch.zeros(b * t, dtype=torch.long)
    source = input_ids.cpu()
    for r, members in enumerate(bins):
        offset = 0
        for i in members:
            n, lo = lengths_list[i], first_list[i]
            ids[r, offset:offset + n] = source[i, lo:lo + n]
            positions[r, offset:offset + n] = torch.arange(n)
            gather[i * t + lo:i * t + lo + n] = torch.arange(r * width + offset, r * width + offset + n)
            offset += n
        # the unused tail is a sequence of its own to transformers: it sees only itself
        positions[r, offset:] = torch.arange(width - offset)
    device = input_ids.device
    return PackedRows(ids.to(device), positions.to(device), gather.to(device), (b, t))


class PackedForward:
    """Stands in for a model in a loss function: ``model(input_ids=…, attention_mask=…)`` runs on the packed
    sequences (position ids, no mask) and returns ``.logits`` (B, T, ...) in the caller's layout. Calls that bring
    their own position ids or a 4-D mask go to the model unchanged. ``area`` counts the token slots computed."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.area = 0

    def __call__(self, *, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs: Any) -> Any:
        if attention_mask.dim() != 2 or "position_ids" in kwargs:
            return self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        packed = pack_sequences(input_ids, attention_mask)
        # with a KV cache (use_cache defaults to True) transformers would not look for sequence starts
        kwargs.setdefault("use_cache", False)
        out = self.model(input_ids=packed.input_ids, attention_mask=None, position_ids=packed.position_ids, **kwargs)
        self.area += packed.area
        return SimpleNamespace(logits=packed.unpack(out.logits))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)
