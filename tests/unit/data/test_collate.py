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


def test_truncation_modes():
    from alignrl.data.collate import truncate

    ids, n_prompt = list(range(10)), 6  # prompt 0..5, completion 6..9
    assert truncate(ids, n_prompt, 12) == truncate(ids, n_prompt, 12, "error")  # fits: untouched in every mode
    left = truncate(ids, n_prompt, 7)
    assert left.ids == (3, 4, 5, 6, 7, 8, 9) and left.n_prompt == 3  # the prompt loses its start
    start = truncate(ids, n_prompt, 8, "keep_start")
    assert start.ids == tuple(range(8)) and start.n_prompt == 6  # the completion loses its end (TRL's keep_start)
    with pytest.raises(ValueError, match="train.truncation: error"):
        truncate(ids, n_prompt, 9, "error")
    with pytest.raises(ValueError, match="no completion token fits"):
        truncate(ids, n_prompt, 6, "keep_start")
    with pytest.raises(ValueError, match="completion of 4 tokens"):
        truncate(ids, n_prompt, 4)
    capped = truncate(ids, n_prompt, 32, max_prompt_length=2)
    assert capped.ids == (4, 5, 6, 7, 8, 9) and capped.n_prompt == 2  # the prompt's last 2 tokens, then fitting
    with pytest.raises(ValueError, match="truncation must be one of"):
        truncate(ids, n_prompt, 7, "keep_end")


def test_truncation_reaches_the_tokenizer_path(tok):
    # BOS + 8 prompt chars already exceed 6 tokens
    with pytest.raises(ValueError, match="no completion token fits"):
        tokenize_sft(tok, "abcdefgh", "xyz", max_length=6, truncation="keep_start")
    kept = tokenize_sft(tok, "ab", "xyzw", max_length=5, truncation="keep_start")
    assert kept.n_prompt == 3 and tok.decode(kept.ids[kept.n_prompt:]) == "xy"  # no eos: the answer was cut
