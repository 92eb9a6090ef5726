import pytest
import torch

from alignrl.data.collate import collate_sft, tokenize_sft
from alignrl.models.tiny import build_tiny_tokenizer


@pytest.fixture(scope="module")
def tok():
    return build_tiny_tokenizer()


def test_tokenize_marks_completion_and_eos(tok):
    ex = tokenize_sft(tok, "12+34=", "46", max_length=32)
    # BOS + 6 prompt chars, then "4", "6", eos
    assert ex.n_prompt == 7
    assert ex.ids[0] == tok.bos_token_id and ex.ids[-1] == tok.eos_token_id
    assert tok.decode(ex.ids[ex.n_prompt : -1]) == "46"


def test_prompt_is_cut_from_the_left(tok):
    ex = tokenize_sft(tok, "abcdefgh", "xy", max_length=6)
    assert len(ex.ids) == 6 and tok.decode(ex.ids[: ex.n_prompt]) == "fgh"


def test_completion_that_does_not_fit_raises(tok):
    with pytest.raises(ValueError, match="max_length"):
        tokenize_sft(tok, "a", "x" * 10, max_length=8)


def test_collate_pads_right_and_masks(tok):
    a = tokenize_sft(tok, "1+1=", "2", 32)
    b = tokenize_sft(tok, "10+10=", "20", 32)
    batch = collate_sft([a, b], tok.pad_token_id)
    assert batch.input_ids.shape == (2, len(b.ids))
    assert batch.attention_mask[0].tolist() == [1] * len(a.ids) + [0] * (len(b.ids) - len(a.ids))
    assert batch.loss_mask[0].sum().item() == 2 and batch.loss_mask[1].sum().item() == 3
    assert torch.all(batch.input_ids[0, len(a.ids):] == tok.pad_token_id)
    assert not batch.loss_mask[batch.attention_mask == 0].any()
