"""Loading HF folders: folder checks with fix-it messages, tokenizer settings, vocab comparison."""

from __future__ import annotations

import pytest
import torch

from alignrl.errors import UserError
from alignrl.models.loading import (
    check_model_dir,
    check_same_tokenizer,
    load_causal_lm,
    load_tokenizer,
    torch_dtype,
)
from alignrl.models.tiny import build_tiny_model


def test_check_model_dir_accepts_a_model_folder(tiny_model_dir):
    assert check_model_dir(tiny_model_dir) == tiny_model_dir


@pytest.mark.parametrize("problem", ["does not exist", "is not a folder", "is not an HF model folder (no config.json)"])
def test_check_model_dir_names_key_path_and_fix(tmp_path, problem):
    path = tmp_path / "x"
    if problem == "is not a folder":
        path.write_text("")
    elif problem.startswith("is not an HF"):
        path.mkdir()
    with pytest.raises(UserError) as err:
        check_model_dir(path, key="reference.path")
    assert str(err.value) == (
        f"reference.path: {path} {problem}. Build one with `alignrl models tiny --out DIR` "
        "or import a GGUF with `alignrl models import-gguf FILE --out DIR`."
    )


def test_a_folder_with_only_pickled_weights_is_refused(tmp_path, tiny_model_dir):
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    torch.save({"x": torch.zeros(1)}, folder / "pytorch_model.bin")
    with pytest.raises(UserError, match=r"policy\.path: .*pickled has no \.safetensors weights \(only pytorch_model\.bin, "
                                        r"a pickle, which alignrl does not load: it can run code\)"):
        load_causal_lm(folder)
    (folder / "pytorch_model.bin").unlink()
    with pytest.raises(UserError, match=r"has no \.safetensors weights; save it with model\.save_pretrained"):
        check_model_dir(folder)


def test_load_tokenizer_pads_left_and_falls_back_to_eos(tiny_model_dir, tmp_path):
    tok = load_tokenizer(tiny_model_dir)
    assert tok.padding_side == "left" and tok.pad_token == "<pad>"

    saved = tmp_path / "no_pad"
    tok.pad_token = None
    tok.save_pretrained(saved)
    (saved / "config.json").write_text("{}")  # only check_model_dir looks at it
    assert load_tokenizer(saved).pad_token == "</s>"


def test_load_causal_lm_dtype(tiny_model_dir):
    model = load_causal_lm(tiny_model_dir, dtype="bfloat16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert not model.training
    with pytest.raises(UserError, match="policy.path dtype: 'fp8' is not a known dtype"):
        load_causal_lm(tiny_model_dir, dtype="fp8")


def test_torch_dtype_names():
    assert torch_dtype("float32") is torch.float32
    with pytest.raises(UserError, match="--dtype: 'half' is not a known dtype; use one of float32"):
        torch_dtype("half", "--dtype")


def test_check_same_tokenizer(tiny_model_dir, tmp_path):
    check_same_tokenizer(tiny_model_dir, build_tiny_model(tmp_path / "same", hidden=32, seed=1))
    other = build_tiny_model(tmp_path / "digits", hidden=32, chars="0123456789")
    with pytest.raises(
        UserError, match=f"the tokenizers of {tiny_model_dir} \\(101 tokens\\) and {other} \\(14 tokens\\) differ"
    ):
        check_same_tokenizer(tiny_model_dir, other)
