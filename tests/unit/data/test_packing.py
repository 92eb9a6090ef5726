"""Sequence packing: best-fit bins, a lossless pack/unpack, and a packed forward that gives the padded forward's
logits and gradients on a RoPE model (SDPA and eager), while computing fewer token slots."""

from __future__ import annotations

import pytest
import torch

from alignrl.data.packing import PackedForward, pack_bins, pack_sequences
from alignrl.ops import token_logprobs


def _batch(spans: list[tuple[int, int]], width: int, vocab: int = 40, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(len(spans), width, dtype=torch.long)
    for i, (lo, hi) in enumerate(spans):
        mask[i, lo:hi] = 1
    ids = torch.randint(4, vocab, (len(spans), width), generator=g) * mask
    return ids, mask


def test_bins_hold_each_sequence_once_within_the_width_best_fit_decreasing():
    lengths = [7, 3, 5, 2, 8, 1, 4]
    bins = pack_bins(lengths, 8)
    assert sorted(i for b in bins for i in b) == list(range(7))
    assert all(sum(lengths[i] for i in b) <= 8 for b in bins)
    # 30 tokens in rows of 8 need 4 rows; best fit decreasing: 8 | 7+1 | 5+3 | 4+2
    assert [[lengths[i] for i in b] for b in bins] == [[8], [7, 1], [5, 3], [4, 2]]
    with pytest.raises(ValueError, match="does not fit"):
        pack_bins([9], 8)


def test_pack_then_unpack_restores_left_and_right_padded_rows():
    ids, mask = _batch([(0, 5), (3, 8), (0, 8), (2, 4), (0, 1)], 8)
    packed = pack_sequences(ids, mask)
    assert packed.area < ids.numel()
    real = mask.bool()
    assert torch.equal(packed.unpack(packed.input_ids)[real], ids[real])
    # positions restart at 0 for every sequence
    positions = packed.unpack(packed.position_ids)
    for i, (lo, hi) in enumerate([(0, 5), (3, 8), (0, 8), (2, 4), (0, 1)]):
        assert positions[i, lo:hi].tolist() == list(range(hi - lo))
    assert int((packed.input_ids > 0).sum()) == int(mask.sum())  # every real token, once


def test_positions_restart_for_each_sequence_and_for_the_unused_tail():
    ids, mask = _batch([(0, 3), (0, 1), (0, 1)], 4)
    packed = pack_sequences(ids, mask)
    # rows of width 3: [3-token sequence], [1-token, 1-token, unused slot]
    assert packed.position_ids.tolist() == [[0, 1, 2], [0, 0, 0]]


def test_no_attention_across_sequences_in_a_packed_row(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    ids, mask = _batch([(0, 6), (0, 4), (0, 2)], 6, vocab=model.config.vocab_size)
    assert len(pack_sequences(ids, mask).input_ids) == 2  # the 4- and 2-token sequences share a row
    with torch.no_grad():
        before = PackedForward(model)(input_ids=ids, attention_mask=mask).logits
        alone = model(input_ids=ids[2:, :2]).logits
        ids[1, :4] = (ids[1, :4] + 1) % model.config.vocab_size  # change the row-mate of sequence 2
        after = PackedForward(model)(input_ids=ids, attention_mask=mask).logits
    # sequence 2 sits after sequence 1 in its row: it sees neither the old nor the new tokens of sequence 1
    assert torch.allclose(before[2, :2], alone[0], atol=1e-5)
    assert torch.equal(after[2, :2], before[2, :2])
    assert not torch.allclose(after[1, :4], before[1, :4])


def test_padding_between_real_tokens_is_refused():
    ids, mask = _batch([(0, 6)], 6)
    mask[0, 2] = 0
    with pytest.raises(ValueError, match="contiguous"):
        pack_sequences(ids, mask)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_forward_gives_the_padded_logits_and_gradients(tiny_model_dir, attn):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32, attn_implementation=attn)
    spans = [(0, 12), (0, 5), (4, 12), (0, 9), (0, 3), (6, 12), (0, 7), (0, 12)]  # right- and left-padded rows
    ids, mask = _batch(spans, 12, vocab=model.config.vocab_size)
    loss_mask = mask.bool().clone()
    for i, (lo, _) in enumerate(spans):
        loss_mask[i, lo] = False  # a sequence's first token is never a target

    def loss_and_grads(forward):
        model.zero_grad()
        logits = forward(input_ids=ids, attention_mask=mask).logits
        logp = token_logprobs(logits, ids)
        loss = -(logp * loss_mask).sum() / loss_mask.sum()
        loss.backward()
        return logits.detach(), logp.detach(), [p.grad.clone() for p in model.parameters()]

    padded_logits, padded_logp, padded_grads = loss_and_grads(model)
    packer = PackedForward(model)
    packed_logits, packed_logp, packed_grads = loss_and_grads(packer)
    real = mask.bool()
    assert torch.allclose(packed_logits[real], padded_logits[real], atol=1e-5)
    assert torch.allclose(packed_logp[loss_mask], padded_logp[loss_mask], atol=1e-5)
    for a, b in zip(packed_grads, padded_grads):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
    assert packer.area < ids.numel()
    assert packer.area == 6 * 12  # 62 real tokens in rows of 12: best fit needs 6 rows, not 8


def test_calls_with_their_own_positions_or_mask_pass_through():
    seen = {}

    def model(**kw):
        seen.update(kw)
        return "out"

    packer = PackedForward(model)
    four_d = torch.ones(1, 1, 3, 3, dtype=torch.bool)
    assert packer(input_ids=torch.ones(1, 3, dtype=torch.long), attention_mask=four_d) == "out"
    assert seen["attention_mask"] is four_d and packer.area == 0
