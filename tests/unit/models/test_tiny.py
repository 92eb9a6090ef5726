"""Tiny tokenizer and model: exact round trips, determinism, argument checks, atomic writes."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoConfig, AutoTokenizer, LlamaForCausalLM, PreTrainedTokenizerFast

from alignrl.errors import UserError
from alignrl.models.loading import load_causal_lm
from alignrl.models.tiny import DEFAULT_CHARS, build_tiny_model, build_tiny_tokenizer

TEXTS = [
    "",
    "hello world",
    "12 + 34 = 46",
    "  two leading, two trailing  ",
    "line one\nline two\n\n\tindented\n",
    "a . b , c ! d ? '' \"q\" (x) [y] {z} <t>",
    DEFAULT_CHARS,
]


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return build_tiny_tokenizer()


@pytest.mark.parametrize("text", TEXTS)
def test_tokenizer_round_trips_one_token_per_character(tokenizer, text):
    ids = tokenizer(text).input_ids
    assert ids[0] == tokenizer.bos_token_id
    assert len(ids) == 1 + len(text)
    assert tokenizer.decode(ids, skip_special_tokens=True) == text


def test_tokenizer_vocab_and_special_ids(tokenizer):
    # 4 specials + 97 printable characters (string.printable has 100, minus \x0b \x0c \r)
    assert len(tokenizer) == 101
    assert (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (0, 1, 2)
    assert tokenizer("\r").input_ids == [1, tokenizer.unk_token_id]
    assert tokenizer("</s>").input_ids == [1, 2]  # a special token in text is one token


def test_tokenizer_custom_chars():
    tok = build_tiny_tokenizer("0123456789+= ")
    assert len(tok) == 4 + 13
    assert tok.decode(tok("1+2= 3").input_ids, skip_special_tokens=True) == "1+2= 3"


def test_tokenizer_pads_on_the_left(tokenizer):
    batch = tokenizer(["a", "abc"], padding=True)
    assert batch.input_ids[0][:2] == [tokenizer.pad_token_id] * 2
    assert batch.attention_mask[0] == [0, 0, 1, 1]


def test_chat_template_renders_turns_and_generation_prompt(tokenizer):
    messages = [
        {"role": "user", "content": "1+1?"},
        {"role": "assistant", "content": "2"},
        {"role": "user", "content": "2+2?"},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == "<s>user: 1+1?\nassistant: 2</s>\nuser: 2+2?\nassistant: "
    ids = tokenizer.apply_chat_template(messages[:1], tokenize=True, return_dict=True).input_ids
    assert ids == tokenizer("user: 1+1?\n").input_ids  # one BOS, from the template


def test_saved_folder_reloads_tokenizer_and_config(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert tok.decode(tok(TEXTS[4]).input_ids, skip_special_tokens=True) == TEXTS[4]
    assert tok.padding_side == "left"
    assert tok.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False) == "<s>user: x\n"
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["vocab_size"] == len(tok) and config["tie_word_embeddings"] is False
    assert config["dtype"] == "float32"
    generation = json.loads((tiny_model_dir / "generation_config.json").read_text())
    assert (generation["bos_token_id"], generation["eos_token_id"], generation["pad_token_id"]) == (1, 2, 0)
    assert (tiny_model_dir / "model.safetensors").is_file()


def test_reload_is_exactly_the_seeded_model(tiny_model_dir):
    loaded = load_causal_lm(tiny_model_dir)
    torch.manual_seed(0)  # build_tiny_model's seed: the same init from the reloaded config
    fresh = LlamaForCausalLM(AutoConfig.from_pretrained(tiny_model_dir)).eval()
    ids = torch.tensor([[1, 40, 41, 42, 5, 6, 7]])
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, fresh(ids).logits)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())


def test_build_is_deterministic_and_leaves_caller_rng_alone(tmp_path):
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = build_tiny_model(tmp_path / "a", hidden=32, seed=7)
    assert torch.equal(torch.rand(3), expected_next)
    b = build_tiny_model(tmp_path / "b", hidden=32, seed=7)
    c = build_tiny_model(tmp_path / "c", hidden=32, seed=8)
    sa, sb, sc = (load_causal_lm(p).state_dict() for p in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["lm_head.weight"], sc["lm_head.weight"])


def test_shape_arguments_reach_the_config(tmp_path):
    path = build_tiny_model(tmp_path / "m", hidden=64, layers=3, heads=4, kv_heads=2, intermediate=96, max_positions=64)
    config = AutoConfig.from_pretrained(path)
    assert (
        config.hidden_size,
        config.num_hidden_layers,
        config.num_attention_heads,
        config.num_key_value_heads,
        config.intermediate_size,
        config.max_position_embeddings,
    ) == (64, 3, 4, 2, 96, 64)
    assert AutoTokenizer.from_pretrained(path).model_max_length == 64


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hidden": 130}, "--hidden 130 is not divisible by --heads 4"),
        ({"heads": 4, "kv_heads": 3}, "--heads 4 is not divisible by --kv-heads 3"),
        ({"hidden": 12, "heads": 4}, "--hidden 12 / --heads 4 gives head size 3"),
        ({"layers": 0}, "--layers 0 must be a positive integer"),
        ({"max_positions": 2.5}, "--max-positions 2.5 must be a positive integer"),
        ({"intermediate": True}, "--intermediate True must be a positive integer"),
        ({"chars": ""}, "--chars is empty"),
        ({"chars": "abca"}, "--chars repeats 'a'"),
    ],
)
def test_invalid_arguments_name_the_flag(tmp_path, kwargs, message):
    with pytest.raises(UserError, match=message.replace("+", r"\+")):
        build_tiny_model(tmp_path / "m", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    def failing_save(self, *args, **kwargs):
        raise OSError("disk full")

    # the model's files are already in the temporary folder when the tokenizer save fails
    monkeypatch.setattr(PreTrainedTokenizerFast, "save_pretrained", failing_save)
    with pytest.raises(OSError, match="disk full"):
        build_tiny_model(tmp_path / "m", hidden=32)
    assert list(tmp_path.iterdir()) == []


def test_refuses_non_empty_out_dir_unless_overwrite(tmp_path):
    out = tmp_path / "m"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match=f"{out} already exists and is not empty"):
        build_tiny_model(out, hidden=32)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]

    build_tiny_model(out, hidden=32, overwrite=True)
    assert not (out / "notes.txt").exists() and (out / "config.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary folders left


def test_accepts_existing_empty_out_dir(tmp_path):
    (tmp_path / "m").mkdir()
    assert (build_tiny_model(tmp_path / "m", hidden=32) / "config.json").is_file()
