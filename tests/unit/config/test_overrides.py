"""Dotted overrides (``train.steps=10``): nested keys, YAML-typed values, order, and strictness."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from alignrl.config import TinyModelConfig, load_recipe
from alignrl.errors import UserError
from alignrl.yaml_loader import apply_override

REPO = Path(__file__).resolve().parents[3]
DEMO = REPO / "recipes" / "tiny" / "demo_sft_arithmetic.yaml"


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def load(*overrides: str):
    return load_recipe(DEMO, list(overrides))


def test_int_value():
    cfg = load("train.steps=10")
    assert cfg.train.steps == 10 and type(cfg.train.steps) is int
    assert cfg.train.batch_size == load().train.batch_size != 10  # siblings from the file are kept


def test_float_values_including_exponents_without_a_dot():
    assert load("learner.lr=0.5").learner.lr == 0.5
    assert load("learner.lr=1").learner.lr == 1.0 and type(load("learner.lr=1").learner.lr) is float
    assert load("learner.lr=3e-4").learner.lr == pytest.approx(3e-4)  # the CLI help's own example
    assert load("learner.lr=1.0e-3").learner.lr == pytest.approx(1e-3)


def test_list_value():
    assert load("learner.betas=[0.8,0.9]").learner.betas == (0.8, 0.9)
    assert load("learner.betas=[0.8, 0.95]").learner.betas == (0.8, 0.95)


def test_nested_section_value_merges_into_the_file():
    cfg = load("policy.tiny.hidden=64")
    assert cfg.policy.tiny == TinyModelConfig(hidden=64, layers=4, heads=4, max_positions=64)


def test_null_clears_an_optional_value():
    assert load("data.eval=null").data.eval is None
    assert load("data.eval=").data.eval is None  # an empty value is null too


def test_bool_and_string_values():
    cfg = load("learner.bf16=true", "export.enabled=false", "name=other-run", "eval.engine=vllm")
    assert cfg.learner.bf16 is True and cfg.export.enabled is False
    assert cfg.name == "other-run" and cfg.eval.engine == "vllm"


def test_string_that_looks_like_a_number_can_be_quoted():
    assert load("name='123'").name == "123"
    with pytest.raises(UserError, match="name: expected a string, got 123"):
        load("name=123")


def test_value_may_contain_equals_and_colons():
    uri = "tasks://arithmetic?digits=1&ops=+&n=50&split=train"
    assert load(f"data.train={uri}").data.train == uri


def test_later_override_wins():
    assert load("train.steps=10", "train.steps=20").train.steps == 20
    assert load("policy.tiny.hidden=64", "policy.tiny={hidden: 32, heads: 2}").policy.tiny == TinyModelConfig(
        hidden=32, heads=2)


def test_override_may_fill_a_section_the_file_leaves_out():
    cfg = load("ray.address=auto", "ray.num_cpus=4")
    assert (cfg.ray.address, cfg.ray.num_cpus) == ("auto", 4)


def test_override_into_an_empty_section():
    data = {"eval": None}
    apply_override(data, {}, "eval.n=5")
    assert data == {"eval": {"n": 5}}


def test_override_switches_the_model_source(tmp_path: Path):
    model = tmp_path / "hf"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_text("")
    cfg = load(f"policy.path={model}", "policy.tiny=null")
    assert cfg.policy.path == str(model) and cfg.policy.tiny is None


@pytest.mark.parametrize(("override", "pattern"), [
    ("train.stesp=10", r"override 'train\.stesp=10': train\.stesp: unknown key\. Did you mean 'steps'\?"),
    ("lerner.lr=0.1", r"lerner: unknown key\. Did you mean 'learner'\?"),
    ("newsection.x=1", r"newsection: unknown key"),
    ("policy.tiny.hiden=64", r"policy\.tiny\.hiden: unknown key\. Did you mean 'hidden'\?"),
    ("algorithm.loss_agr=token_mean", r"algorithm\.loss_agr: unknown key\. Did you mean 'loss_agg'\?"),
])
def test_override_never_adds_unknown_keys_silently(override: str, pattern: str):
    with pytest.raises(UserError, match=pattern):
        load(override)


@pytest.mark.parametrize(("override", "pattern"), [
    ("learner.lr=abc", r"learner\.lr: expected a number, got 'abc'"),
    ("train.steps=1.5", r"train\.steps: expected an integer, got 1\.5"),
    ("learner.bf16=maybe", r"learner\.bf16: expected true or false, got 'maybe'"),
    ("nodots", r"override 'nodots': expected dotted\.key=value"),
    ("train.steps.x=1", r"train\.steps is a value, not a section; it has no key 'x'"),
    ("train=5", r"train: expected a mapping \(section\), got 5"),
    ("train.steps=[1", r"not valid YAML"),
    ("9lives=1", r"not a dotted key"),
])
def test_bad_override_values(override: str, pattern: str):
    with pytest.raises(UserError, match=pattern):
        load(override)


def test_override_origin_is_named_in_errors():
    with pytest.raises(UserError) as info:
        load("learner.zero_stage=7")
    assert str(info.value).startswith("override 'learner.zero_stage=7': learner.zero_stage: expected one of")


def test_overrides_do_not_touch_the_file():
    before = DEMO.read_text()
    load("train.steps=10", "learner.lr=0.1")
    assert DEMO.read_text() == before
    assert load().train.steps == yaml.safe_load(before)["train"]["steps"] != 10
