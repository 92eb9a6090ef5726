"""load_recipe: the demo and every shipped recipe load; frozen tree; extends; origins; round trip."""

from __future__ import annotations

import dataclasses
import json
import textwrap
from pathlib import Path

import pytest
import yaml

from alignrl.config import (
    DataConfig,
    LearnerConfig,
    ModelConfig,
    RunConfig,
    TinyModelConfig,
    TrainConfig,
    load_recipe,
    recipe_to_dict,
)
from alignrl.errors import UserError
from alignrl.objectives.sft import SFTParams
from alignrl.schema import Component
from alignrl.yaml_loader import deep_merge, read_recipe

REPO = Path(__file__).resolve().parents[3]
DEMO = REPO / "recipes" / "tiny" / "demo_sft_arithmetic.yaml"
RECIPES = sorted((REPO / "recipes").glob("**/*.yaml"))

BASE = """\
name: base-run
policy:
  tiny: {hidden: 32, layers: 1, heads: 2}
algorithm: {name: sft, loss_agg: seq_mean_token_mean}
data:
  train: tasks://arithmetic?digits=1&n=50
  eval: tasks://arithmetic?digits=1&n=20&split=test
learner:
  workers: 1
  lr: 0.01
  betas: [0.8, 0.9]
  micro_batch_size: 8
train: {steps: 10, batch_size: 16, log_every: 5}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_demo_recipe_loads():
    cfg = load_recipe(DEMO)
    assert isinstance(cfg, RunConfig)
    assert cfg.name == "demo-sft-arithmetic"
    assert cfg.policy == ModelConfig(tiny=TinyModelConfig(hidden=128, layers=4, heads=4, max_positions=64))
    assert cfg.algorithm == Component("sft", SFTParams(loss_agg="token_mean"))
    assert cfg.data.train.startswith("tasks://arithmetic?")
    assert cfg.learner.lr == pytest.approx(3.0e-3) and isinstance(cfg.learner.lr, float)
    assert cfg.learner.lr_schedule == "cosine"
    assert cfg.learner.betas == (0.9, 0.999)  # default kept
    assert cfg.train == TrainConfig(**yaml.safe_load(DEMO.read_text())["train"])
    assert cfg.eval.max_new_tokens == 6 and cfg.export.enabled is True
    assert cfg.run_dir == Path("runs") / "demo-sft-arithmetic"


@pytest.mark.parametrize("path", RECIPES, ids=[str(p.relative_to(REPO)) for p in RECIPES])
def test_every_shipped_recipe_loads(path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path, tmp_path: Path):
    """A chained recipe starts from another shipped recipe's export (runs/NAME/export, absent in a clean clone):
    that NAME must be a shipped recipe's, and the recipe must load with a model folder in its place."""
    from alignrl.yaml_loader import read_recipe

    monkeypatch.chdir(REPO)  # data paths in recipes are relative to where `alignrl` runs
    raw = read_recipe(path)[0]
    start = (raw.get("policy") or {}).get("path") or ""
    anchors = [dict(a) for a in raw.get("anchors") or []]
    produced = {yaml.safe_load(r.read_text()).get("name") for r in RECIPES}
    produced |= {load_recipe(r).name for r in RECIPES if not _chained(r)}
    overrides = []
    if start.startswith("runs/"):
        assert start.split("/")[1] in produced, f"{start}: no shipped recipe writes this run folder"
        overrides.append(f"policy.path={tiny_model_dir}")
    if any(str(a.get("path") or "").startswith("runs/") for a in anchors):
        for anchor in anchors:
            if str(anchor.get("path") or "").startswith("runs/"):
                assert anchor["path"].split("/")[1] in produced, f"{anchor['path']}: no shipped recipe writes it"
                anchor["path"] = str(tiny_model_dir)
        overrides.append(f"anchors={json.dumps(anchors)}")
    rewards = [dict(r) for r in raw.get("rewards") or []]
    if any(str(p).startswith("runs/") for r in rewards for p in [r.get("path") or ""] + list(r.get("paths") or [])):
        from alignrl.loops.reward_model import build_reward_init

        rm = build_reward_init(tiny_model_dir, tmp_path / "rm", seed=0)
        for r in rewards:
            for p in [r.get("path") or ""] + list(r.get("paths") or []):
                if p.startswith("runs/"):
                    assert p.split("/")[1] in produced, f"{p}: no shipped recipe writes it"
            r.update({"path": str(rm)} if r.get("path") else {"paths": [str(rm)] * len(r.get("paths") or [])})
        overrides.append(f"rewards={json.dumps(rewards)}")
    cfg = load_recipe(path, overrides)
    assert isinstance(cfg, RunConfig)
    # the resolved recipe a run folder stores loads back to the same config (what `--resume` reads)
    stored = tmp_path / "stored.yaml"
    stored.write_text(yaml.safe_dump(recipe_to_dict(cfg), sort_keys=False))
    assert load_recipe(stored) == cfg


def _chained(recipe: Path) -> bool:
    from alignrl.yaml_loader import read_recipe

    raw = read_recipe(recipe)[0]
    paths = [(raw.get("policy") or {}).get("path")] + [a.get("path") for a in raw.get("anchors") or []]
    return any(str(p or "").startswith("runs/") for p in paths)


def test_there_are_shipped_recipes():
    assert DEMO in RECIPES


def test_config_is_frozen():
    cfg = load_recipe(DEMO)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.steps = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.algorithm.params.loss_agg = "seq_mean_token_sum"  # type: ignore[misc]
    with pytest.raises((AttributeError, TypeError)):  # slots: no new attributes either
        cfg.learner.new_field = 1  # type: ignore[attr-defined]


def test_algorithm_params_are_built_into_their_dataclass(in_tmp: Path):
    cfg = load_recipe(write(in_tmp / "r.yaml", BASE))
    assert isinstance(cfg.algorithm, Component)
    assert cfg.algorithm.name == "sft"
    assert isinstance(cfg.algorithm.params, SFTParams)
    assert cfg.algorithm.params.loss_agg == "seq_mean_token_mean"


def test_algorithm_given_by_name_only_gets_default_params(in_tmp: Path):
    cfg = load_recipe(write(in_tmp / "r.yaml", BASE.replace("{name: sft, loss_agg: seq_mean_token_mean}", "sft")))
    assert cfg.algorithm == Component("sft", SFTParams())


def test_extends_merges_mappings_overrides_scalars_replaces_lists(in_tmp: Path):
    write(in_tmp / "base.yaml", BASE)
    child = write(in_tmp / "child.yaml", """\
        extends: base.yaml
        name: child-run
        learner: {lr: 0.002, betas: [0.5, 0.6]}
        train: {steps: 20}
    """)
    cfg = load_recipe(child)
    assert cfg.name == "child-run"                      # scalar overridden
    assert cfg.learner == LearnerConfig(workers=1, lr=0.002, betas=(0.5, 0.6), micro_batch_size=8)
    assert cfg.train == TrainConfig(steps=20, batch_size=16, log_every=5)  # mapping merged key by key
    assert cfg.data == DataConfig(train="tasks://arithmetic?digits=1&n=50",
                                  eval="tasks://arithmetic?digits=1&n=20&split=test")


def test_extends_replaces_lists_instead_of_merging_them(in_tmp: Path):
    write(in_tmp / "base.yaml", "xs: [1, 2, 3]\nsec: {a: [1, 2], b: 1}\n")
    data, _ = read_recipe(write(in_tmp / "child.yaml", "extends: base.yaml\nxs: [9]\nsec: {a: [7]}\n"))
    assert data == {"xs": [9], "sec": {"a": [7], "b": 1}}
    assert deep_merge({"a": [1, 2, 3], "m": {"x": 1}}, {"a": [4], "m": {"y": 2}}) == {"a": [4], "m": {"x": 1, "y": 2}}


def test_extends_chain_is_relative_to_each_file(in_tmp: Path):
    write(in_tmp / "base.yaml", BASE)
    write(in_tmp / "mid" / "mid.yaml", "extends: ../base.yaml\ntrain: {steps: 30}\n")
    leaf = write(in_tmp / "mid" / "deeper" / "leaf.yaml", "extends: ../mid.yaml\nname: leaf-run\nseed: 3\n")
    cfg = load_recipe(leaf)
    assert (cfg.name, cfg.seed, cfg.train.steps, cfg.train.batch_size) == ("leaf-run", 3, 30, 16)


def test_extends_section_can_be_replaced_by_a_child_value(in_tmp: Path):
    # policy: {path: ...} in the child merges into the parent's {tiny: ...}; null clears tiny.
    write(in_tmp / "base.yaml", BASE)
    model = in_tmp / "model"
    write(model / "config.json", "{}")
    write(model / "model.safetensors", "")  # recipe loading checks the folder's layout, not its weights
    cfg = load_recipe(write(in_tmp / "child.yaml", f"extends: base.yaml\npolicy: {{path: {model}, tiny: null}}\n"))
    assert cfg.policy == ModelConfig(path=str(model))


def test_error_in_parent_names_the_parent_file_and_line(in_tmp: Path):
    write(in_tmp / "base.yaml", BASE + "eval: {engine: vlm}\n")
    child = write(in_tmp / "child.yaml", "extends: base.yaml\nname: child-run\n")
    with pytest.raises(UserError) as info:
        load_recipe(child)
    msg = str(info.value)
    assert f"{in_tmp / 'base.yaml'}:14: eval.engine:" in msg, msg
    assert "Did you mean 'vllm'" in msg


def test_error_in_child_names_the_child_file_and_line(in_tmp: Path):
    write(in_tmp / "base.yaml", BASE)
    child = write(in_tmp / "child.yaml", "extends: base.yaml\nname: child-run\nlearner:\n  zero_stage: 9\n")
    with pytest.raises(UserError, match=r"child\.yaml:4: learner\.zero_stage: expected one of 0, 1, 2, 3"):
        load_recipe(child)


def test_error_on_a_key_the_child_overrides_names_the_child(in_tmp: Path):
    write(in_tmp / "base.yaml", BASE)
    child = write(in_tmp / "child.yaml", "extends: base.yaml\n\ntrain:\n  steps: -1\n")
    with pytest.raises(UserError, match=r"child\.yaml:4: train\.steps: steps must be >= 1, got -1"):
        load_recipe(child)


def test_missing_section_names_the_recipe_file(in_tmp: Path):
    path = write(in_tmp / "r.yaml", BASE.replace("train: {steps: 10, batch_size: 16, log_every: 5}\n", ""))
    with pytest.raises(UserError, match=r"r\.yaml: train: missing required key\(s\): train"):
        load_recipe(path)


def test_recipe_to_dict_round_trips(in_tmp: Path):
    for source in (DEMO, write(in_tmp / "r.yaml", BASE)):
        cfg = load_recipe(source)
        plain = recipe_to_dict(cfg)
        assert plain["algorithm"] == {"name": "sft", "loss_agg": cfg.algorithm.params.loss_agg}
        dumped = in_tmp / "dumped.yaml"
        dumped.write_text(yaml.safe_dump(plain, sort_keys=False))
        again = load_recipe(dumped)
        assert again == cfg
        assert recipe_to_dict(again) == plain


def test_a_stored_recipe_with_reward_terms_loads_back(in_tmp: Path):
    """Each term's resolved ``aggregate: {name: mean}`` is the default, not an ensemble setting on a verifier."""
    (in_tmp / "fn.py").write_text("def score(prompts, completions, answers):\n    return [0.0] * len(completions)\n")
    cfg = load_recipe(write(in_tmp / "rl.yaml", """\
name: rl
policy: {tiny: {hidden: 32, layers: 1, heads: 2}}
algorithm: {name: grpo, group_size: 4}
rewards: [{kind: verifier}, {kind: function, function: "fn.py:score", weight: 0.1, normalize: running}]
data: {train: "tasks://arithmetic?digits=1&n=50"}
train: {steps: 2, batch_size: 8}
learner: {micro_batch_size: 8}
"""))
    stored = write(in_tmp / "stored.yaml", yaml.safe_dump(recipe_to_dict(cfg), sort_keys=False))
    assert load_recipe(stored) == cfg


def test_data_files_are_checked_relative_to_the_working_directory(in_tmp: Path):
    write(in_tmp / "data" / "train.jsonl", '{"prompt": "1+1=", "completion": "2"}\n')
    recipe = BASE.replace("tasks://arithmetic?digits=1&n=50", "data/train.jsonl")
    cfg = load_recipe(write(in_tmp / "recipes" / "r.yaml", recipe))
    assert cfg.data.train == "data/train.jsonl"


def test_task_uris_are_checked_at_load_time(in_tmp: Path):
    path = write(in_tmp / "r.yaml", BASE.replace("n=20&split=test", "n=20&split=tset"))
    with pytest.raises(UserError, match=r"r\.yaml:7: data\.eval: .*split must be one of train, test"):
        load_recipe(path)


def test_model_path_accepts_an_hf_folder_or_an_existing_gguf(in_tmp: Path):
    folder = in_tmp / "hf"
    write(folder / "config.json", "{}")
    write(folder / "model.safetensors", "")
    gguf = write(in_tmp / "m.gguf", "")
    for model in (folder, gguf):
        recipe = BASE.replace("tiny: {hidden: 32, layers: 1, heads: 2}", f"path: {model}")
        assert load_recipe(write(in_tmp / "r.yaml", recipe)).policy.path == str(model)


def test_exponent_floats_without_a_dot_are_numbers(in_tmp: Path):
    # PyYAML (YAML 1.1) reads 3e-4 as a string; the loader reads it as the number it means.
    cfg = load_recipe(write(in_tmp / "r.yaml", BASE.replace("lr: 0.01", "lr: 3e-4")))
    assert cfg.learner.lr == pytest.approx(3e-4)
    assert load_recipe(write(in_tmp / "r.yaml", BASE.replace("name: base-run", "name: 1e3x"))).name == "1e3x"
