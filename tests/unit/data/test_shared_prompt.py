"""Shared-prompt rows score each response exactly as its own padded row does: the same log-prob sums and the same
gradients, including pairs whose prompts differ after a common prefix and a batch with no common prefix at all."""

import pytest
import torch

from alignrl.data.collate import TokenizedExample, collate_sft
from alignrl.data.shared_prompt import (
    CHOSEN,
    PAD,
    REJECTED,
    SHARED,
    collate_shared_prompt,
    shared_prefix_length,
    shared_prompt_attention,
    shared_prompt_token_logps,
)
from alignrl.ops import token_logprobs

PAIRS = [
    # same prompt (1, 10, 11, 12), responses of different lengths
    (TokenizedExample((1, 10, 11, 12, 20, 21, 2), 4), TokenizedExample((1, 10, 11, 12, 22, 2), 4)),
    # a shorter prompt
    (TokenizedExample((1, 13, 25, 2), 2), TokenizedExample((1, 13, 26, 27, 28, 29, 2), 2)),
    # prompts that part after two tokens (as after left truncation or a chat template): the rest of each prompt
    # is in its own tail and is not a target
    (TokenizedExample((1, 14, 15, 16, 30, 2), 4), TokenizedExample((1, 14, 17, 31, 32, 2), 3)),
]


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


def _padded_sums(model, pairs):
    tokens = collate_sft([side for pair in pairs for side in pair], pad_id=0)
    logits = model(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask).logits
    return (token_logprobs(logits, tokens.input_ids).float() * tokens.loss_mask).sum(1).view(-1, 2)


def test_layout_widths_segments_positions_and_targets():
    assert [shared_prefix_length(c, r) for c, r in PAIRS] == [4, 2, 2]
    batch = collate_shared_prompt(PAIRS, pad_id=0)
    seg, pos, mask = batch.rows["segment"], batch.rows["position_ids"], batch.tokens.loss_mask
    # S = 4, C = max(3, 2, 4) = 4, R = max(2, 5, 4) = 5
    assert batch.tokens.input_ids.shape == (3, 13)
    assert int(batch.rows["shared_width"][0]) == 4 and int(batch.rows["chosen_width"][0]) == 4
    row = 2  # prefix (1, 14) left-padded; chosen tail 15 16 30 2 (targets 30 2); rejected tail 17 31 32 2
    assert seg[row].tolist() == [PAD, PAD, SHARED, SHARED] + [CHOSEN] * 4 + [REJECTED] * 4 + [PAD]
    assert batch.tokens.input_ids[row].tolist() == [0, 0, 1, 14, 15, 16, 30, 2, 17, 31, 32, 2, 0]
    assert pos[row, 2:12].tolist() == [0, 1, 2, 3, 4, 5, 2, 3, 4, 5]
    assert mask[row].nonzero().flatten().tolist() == [6, 7, 9, 10, 11]
    # targets are exactly the responses' tokens: as many as in the padded layout
    padded = collate_sft([side for pair in PAIRS for side in pair], pad_id=0)
    assert int(mask.sum()) == int(padded.loss_mask.sum())


def test_attention_rejected_tail_sees_the_prefix_not_the_chosen_tail():
    batch = collate_shared_prompt(PAIRS[:1], pad_id=0)
    allowed = shared_prompt_attention(batch.rows["segment"])[0, 0]
    s, c = 4, 3
    rejected_first = s + c
    assert allowed[rejected_first, :s].all() and not allowed[rejected_first, s:s + c].any()
    assert allowed[s + c - 1, :s + c].all()  # the chosen tail sees the prefix and itself, causally
    assert not allowed[0, 1]  # causal
    assert allowed.diagonal().all()  # padding queries attend to themselves, so no row is all-masked


@pytest.mark.parametrize("pairs", [PAIRS, [PAIRS[0]], [(TokenizedExample((10, 20, 2), 1),
                                                        TokenizedExample((11, 21, 22, 2), 1))]],
                         ids=["mixed", "one-pair", "no-common-prefix"])
def test_sums_and_gradients_equal_the_padded_layout(model, pairs):
    batch = collate_shared_prompt(pairs, pad_id=0)
    model.zero_grad()
    _, shared = shared_prompt_token_logps(model, batch)
    shared.sum().backward()
    grads_shared = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    padded = _padded_sums(model, pairs)
    padded.sum().backward()
    assert shared.detach() == pytest.approx(padded.detach(), abs=2e-5)
    assert float(padded.detach().abs().min()) > 0.1  # real sums, not zeros
    for gs, p in zip(grads_shared, model.parameters()):
        torch.testing.assert_close(gs, p.grad, rtol=1e-4, atol=1e-6)


def test_eager_attention_gets_an_additive_mask_with_the_same_sums(tiny_model_dir, model):
    from transformers import AutoModelForCausalLM

    eager = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32, attn_implementation="eager")
    batch = collate_shared_prompt(PAIRS, pad_id=0)
    with torch.no_grad():
        assert shared_prompt_token_logps(eager, batch)[1] == pytest.approx(_padded_sums(model, PAIRS), abs=2e-5)


def test_equal_shards_repeat_the_last_pair_row_with_its_layout():
    from alignrl.actors.learner import _equal_shards

    batch = collate_shared_prompt(PAIRS, pad_id=0)
    shards = _equal_shards(batch, 2)
    assert [len(s) for s in shards] == [2, 2]
    assert torch.equal(shards[1].tokens.input_ids[1], batch.tokens.input_ids[2])
    assert torch.equal(shards[1].rows["segment"][1], batch.rows["segment"][2])
    assert int(shards[1].rows["shared_width"][1]) == 4
