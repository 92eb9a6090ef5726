"""Token-budget micro-batches: rows sorted and packed within the budget, counts equalised, padding trimmed
without changing what a RoPE model computes at the real tokens."""

from __future__ import annotations

import pytest
import torch

from alignrl.data.micro_batches import real_spans, split_to_count, token_budget_groups, trim_padding
from alignrl.types import RolloutBatch, TokenBatch


def _mask(spans: list[tuple[int, int]], width: int) -> torch.Tensor:
    mask = torch.zeros(len(spans), width, dtype=torch.long)
    for i, (lo, hi) in enumerate(spans):
        mask[i, lo:hi] = 1
    return mask


def test_real_spans_of_left_right_and_empty_rows():
    first, stop = real_spans(_mask([(3, 8), (0, 5), (0, 0)], 8))
    assert first.tolist() == [3, 0, 8] and stop.tolist() == [8, 5, 0]


def test_groups_cover_each_row_once_within_the_budget_long_rows_in_small_groups():
    g = torch.Generator().manual_seed(0)
    # the RL layout: prompts left-padded up to column 16, responses right-padded after it
    prompt, response = torch.randint(1, 16, (40,), generator=g), torch.randint(1, 16, (40,), generator=g)
    mask = _mask([(16 - int(p), 16 + int(r)) for p, r in zip(prompt, response)], 32)
    groups = token_budget_groups(mask, budget=64)
    rows = torch.cat(groups).sort().values
    assert rows.tolist() == list(range(40))
    first, stop = real_spans(mask)
    for grp in groups:
        width = int(stop[grp].max() - first[grp].min())
        assert len(grp) == 1 or len(grp) * width <= 64
    lengths = (stop - first).float()
    # descending length order: the first group holds the longest rows, the last the shortest, in more rows
    assert lengths[groups[0]].min() >= lengths[groups[-1]].max()
    assert len(groups[-1]) > len(groups[0])
    assert [x.tolist() for x in token_budget_groups(mask, budget=64)] == [x.tolist() for x in groups]
    assert len(token_budget_groups(mask, budget=10**6)) == 1  # everything fits: one micro-batch


def test_split_to_count_halves_the_largest_group():
    groups = [torch.tensor([0, 1, 2, 3]), torch.tensor([4])]
    out = split_to_count(groups, 4)
    assert [x.tolist() for x in out] == [[0], [1], [2, 3], [4]]
    assert split_to_count(groups, 2) == groups
    with pytest.raises(ValueError, match="cannot split 5 rows into 6"):
        split_to_count(groups, 6)


def test_trim_cuts_token_aligned_rows_and_keeps_per_row_ones():
    mask = _mask([(2, 6), (3, 7)], 9)
    tokens = TokenBatch(torch.arange(18).reshape(2, 9), mask, mask.bool())
    batch = RolloutBatch(tokens, {"advantages": torch.arange(18.0).reshape(2, 9), "rewards": torch.tensor([1.0, 2.0]),
                                  "topk": torch.zeros(2, 9, 3)})
    cut = trim_padding(batch)
    assert cut.tokens.input_ids.tolist() == [[2, 3, 4, 5, 6], [11, 12, 13, 14, 15]]
    assert cut.rows["advantages"].tolist() == cut.tokens.input_ids.float().tolist()
    assert cut.rows["rewards"].tolist() == [1.0, 2.0] and cut.rows["topk"].shape == (2, 5, 3)
    full = _mask([(0, 9), (0, 4)], 9)
    same = TokenBatch(torch.zeros(2, 9, dtype=torch.long), full, full.bool())
    assert trim_padding(same) is same


def test_trimmed_rows_give_the_same_token_log_probs_on_a_rope_model(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from alignrl.ops import token_logprobs

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    mask = _mask([(4, 11), (5, 9)], 14)  # 4 all-padding columns on the left, 3 on the right
    ids = torch.randint(3, 60, mask.shape, generator=torch.Generator().manual_seed(0)) * mask
    batch = TokenBatch(ids, mask, mask.bool())
    cut = trim_padding(batch)
    assert cut.input_ids.shape == (2, 7)
    with torch.no_grad():
        full = token_logprobs(model(input_ids=ids, attention_mask=mask).logits, ids)[:, 4:11]
        trimmed = token_logprobs(model(input_ids=cut.input_ids, attention_mask=cut.attention_mask).logits,
                                 cut.input_ids)
    real = cut.loss_mask.clone()
    real[:, 0] = False  # a row's first real token has no prediction (its left neighbour is padding)
    real[1, 1] = False
    torch.testing.assert_close(trimmed[real], full[real], rtol=0, atol=2e-5)
