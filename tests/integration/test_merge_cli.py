"""`alignrl merge` end to end on real tiny HF folders: closed forms (LERP of identical models, SLERP ends, TIES
without conflicts = task arithmetic), every shared method against mergekit 0.1.5's own `mergekit-yaml` on the
same YAML, the output loading in transformers, and bad configs refused before anything is written."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from alignrl.cli import main

pytestmark = [pytest.mark.integration]
LAYERS = 3


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """Three tiny Llamas (one tokenizer, different seeds) and a model whose task vector has a's signs."""
    from alignrl.models.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("merge")
    out = {name: build_tiny_model(root / name, hidden=64, layers=LAYERS, heads=2, max_positions=32, seed=seed)
           for name, seed in (("base", 1), ("a", 2), ("b", 3))}
    base, a = load_file(str(out["base"] / "model.safetensors")), load_file(str(out["a"] / "model.safetensors"))
    shutil.copytree(out["a"], root / "a_twice")  # base + 2·(a − base): every coordinate agrees in sign with a
    save_file({k: base[k] + 2 * (a[k] - base[k]) for k in a}, str(root / "a_twice" / "model.safetensors"),
              metadata={"format": "pt"})
    out["a_twice"] = root / "a_twice"
    return out


def _merge(tmp_path: Path, config: dict, name: str = "out") -> dict[str, torch.Tensor]:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["merge", str(path), "-o", str(tmp_path / name)]) == 0
    return load_file(str(tmp_path / name / "model.safetensors"))


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def _max_diff(x: dict, y: dict) -> float:
    """Largest absolute difference over all tensors; inf when the two hold different tensor names."""
    if x.keys() != y.keys():
        return float("inf")
    return max(float((x[k].double() - y[k].double()).abs().max()) for k in x)


def test_lerp_of_a_model_with_itself_is_the_model(tmp_path, folders):
    got = _merge(tmp_path, {"merge_method": "linear", "models": [
        {"model": str(folders["a"]), "parameters": {"weight": 0.3}},
        {"model": str(folders["a"]), "parameters": {"weight": 0.7}}]})
    assert _max_diff(got, _weights(folders["a"])) <= 1e-6
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert {"config.json", "model.safetensors", "tokenizer.json", "merge_config.yaml"} <= set(written)
    assert not list(tmp_path.glob(".out.tmp-*"))


@pytest.mark.parametrize("t, end", [(0.0, "base"), (1.0, "b")])
def test_slerp_ends_are_the_two_models(tmp_path, folders, t, end):
    got = _merge(tmp_path, {"merge_method": "slerp", "base_model": str(folders["base"]),
                            "models": [{"model": str(folders["base"])}, {"model": str(folders["b"])}],
                            "parameters": {"t": t}})
    assert _max_diff(got, _weights(folders[end])) <= 1e-6


def test_liti_interpolates_from_the_base_towards_the_other_model(tmp_path, folders):
    base, b = _weights(folders["base"]), _weights(folders["b"])
    for eta in (0.0, 0.25, 1.0):
        got = _merge(tmp_path, {"merge_method": "liti", "base_model": str(folders["base"]),
                                "models": [{"model": str(folders["b"])}], "parameters": {"eta": eta}}, f"liti{eta}")
        assert _max_diff(got, {k: base[k] + eta * (b[k] - base[k]) for k in b}) <= 1e-6


def test_ties_at_density_one_without_sign_conflicts_is_task_arithmetic(tmp_path, folders):
    models = [{"model": str(folders["a"]), "parameters": {"weight": 0.5, "density": 1.0}},
              {"model": str(folders["a_twice"]), "parameters": {"weight": 1.5, "density": 1.0}}]
    ties = _merge(tmp_path, {"merge_method": "ties", "base_model": str(folders["base"]), "models": models,
                             "parameters": {"normalize": False}}, "ties")
    plain = _merge(tmp_path, {"merge_method": "task_arithmetic", "base_model": str(folders["base"]), "models": [
        {"model": m["model"], "parameters": {"weight": m["parameters"]["weight"]}} for m in models]}, "ta")
    assert _max_diff(ties, plain) <= 1e-6
    base, a = _weights(folders["base"]), _weights(folders["a"])
    assert _max_diff(plain, {k: base[k] + 3.5 * (a[k] - base[k]) for k in a}) <= 1e-5  # 0.5·δ + 1.5·2δ


def test_the_merged_folder_loads_in_transformers_and_generates(tmp_path, folders):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _merge(tmp_path, {"merge_method": "slerp", "base_model": str(folders["a"]),
                      "models": [{"model": str(folders["a"])}, {"model": str(folders["b"])}],
                      "parameters": {"t": [0.0, 0.5, 1.0]}, "dtype": "bfloat16"})
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert model.dtype == torch.bfloat16
    tok = AutoTokenizer.from_pretrained(tmp_path / "out")
    out = model.generate(**tok("12+3=", return_tensors="pt"), max_new_tokens=4, do_sample=False)
    assert out.shape[1] > 0


def _mergekit(tmp_path: Path, config: dict) -> dict[str, torch.Tensor]:
    pytest.importorskip("mergekit", reason="mergekit (test-only peer: requirements.lock) not installed")
    path = tmp_path / "mk.yaml"
    path.write_text(yaml.safe_dump(config))
    exe = Path(sys.executable).with_name("mergekit-yaml")
    subprocess.run([str(exe), str(path), str(tmp_path / "mk"), "--no-write-model-card", "--quiet"], check=True,
                   capture_output=True, timeout=300)
    return load_file(str(tmp_path / "mk" / "model.safetensors"))


def _peer_configs(f: dict[str, Path]) -> dict[str, dict]:
    a, b, base = str(f["a"]), str(f["b"]), str(f["base"])
    return {
        "linear_gradient": {"merge_method": "linear", "models": [
            {"model": a, "parameters": {"weight": [0.2, 0.8]}}, {"model": b, "parameters": {"weight": 0.5}}]},
        "slerp_filters": {"merge_method": "slerp", "base_model": a, "models": [{"model": a}, {"model": b}],
                          "parameters": {"t": [{"filter": "self_attn", "value": [0.0, 0.3, 1.0]},
                                               {"filter": "mlp", "value": [1.0, 0.5, 0.0]}, {"value": 0.4}]}},
        "task_arithmetic": {"merge_method": "task_arithmetic", "base_model": base, "models": [
            {"model": a, "parameters": {"weight": 0.7}}, {"model": b, "parameters": {"weight": -0.3}}],
            "parameters": {"lambda": 1.3}},
        "ties": {"merge_method": "ties", "base_model": base, "models": [
            {"model": a, "parameters": {"weight": 0.6, "density": [0.2, 0.9]}},
            {"model": b, "parameters": {"weight": 0.4, "density": 0.5}}], "parameters": {"int8_mask": True}},
        "dare_ties_dense": {"merge_method": "dare_ties", "base_model": base, "models": [
            {"model": a, "parameters": {"weight": 0.6}}, {"model": b, "parameters": {"weight": 0.4}}]},
        "model_stock": {"merge_method": "model_stock", "base_model": base,
                        "models": [{"model": a}, {"model": b}, {"model": str(f["a_twice"])}]},
    }


@pytest.mark.parametrize("case", ["linear_gradient", "slerp_filters", "task_arithmetic", "ties", "dare_ties_dense",
                                  "model_stock"])
def test_alignrl_merge_agrees_with_mergekit_on_the_same_yaml(tmp_path, folders, case):
    config = _peer_configs(folders)[case]
    ours = _merge(tmp_path, config)
    theirs = _mergekit(tmp_path, config)
    assert _max_diff(ours, theirs) <= 2e-6  # float32 inputs; both compute the same formulas in (at least) float32


def _bad(tmp_path: Path, config: dict | str, capsys) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
    assert main(["merge", str(path), "-o", str(tmp_path / "never")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("alignrl: error:") and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "never").exists() and not list(tmp_path.glob(".never*"))
    return err


def test_bad_merge_configs_are_refused_naming_the_key(tmp_path, folders, capsys):
    a, b, base = str(folders["a"]), str(folders["b"]), str(folders["base"])
    ties = {"merge_method": "ties", "base_model": base, "models": [{"model": a, "parameters": {"weight": 1.0}}]}
    assert "slices" in _bad(tmp_path, {**ties, "models": None, "slices": []}, capsys)
    assert "unknown key" in _bad(tmp_path, {**ties, "sparsity": 0.3}, capsys)
    err = _bad(tmp_path, {**ties, "models": [{"model": a, "parameters": {"weight": 1.0, "t": 0.3}}]}, capsys)
    assert "models[0].parameters.t" in err and "takes no parameter 't'" in err
    err = _bad(tmp_path, {**ties, "models": [{"model": a, "parameters": {"density": 0.5}}]}, capsys)
    assert "models[0].parameters.weight" in err and "needs 'weight'" in err
    assert "set base_model" in _bad(tmp_path, {**ties, "base_model": None}, capsys)
    assert "not an HF model folder" in _bad(tmp_path, {**ties, "base_model": str(tmp_path / "nowhere")}, capsys)
    assert "LoRA" in _bad(tmp_path, {**ties, "models": [{"model": a + "+lora"}]}, capsys)
    assert "is not a merge method" in _bad(tmp_path, {**ties, "merge_method": "della"}, capsys)
    assert "exactly two models" in _bad(tmp_path, {"merge_method": "slerp", "base_model": base,
                                                   "models": [{"model": a}, {"model": b}], "parameters": {"t": 0.5}},
                                        capsys)
    assert "besides base_model" in _bad(tmp_path, {**ties, "models": [{"model": base}]}, capsys)
    err = _bad(tmp_path, {"merge_method": "linear", "models": [{"model": a, "parameters": {"weight": "x"}}]}, capsys)
    assert "models[0].parameters.weight" in err


def test_a_tokenizer_mismatch_is_refused(tmp_path, folders, capsys):
    from alignrl.models.tiny import build_tiny_model

    other = build_tiny_model(tmp_path / "digits", hidden=64, layers=LAYERS, heads=2, max_positions=32,
                             chars="0123456789+=")
    err = _bad(tmp_path, {"merge_method": "linear", "models": [{"model": str(folders["a"]), "parameters": {"weight": 1}},
                                                               {"model": str(other), "parameters": {"weight": 1}}]},
               capsys)
    assert "tokenizers" in err


def test_an_existing_output_is_kept_without_overwrite(tmp_path, folders, capsys):
    config = {"merge_method": "linear", "models": [{"model": str(folders["a"]), "parameters": {"weight": 1.0}}]}
    _merge(tmp_path, config)
    before = json.loads((tmp_path / "out" / "config.json").read_text())
    assert main(["merge", str(tmp_path / "out.yaml"), "-o", str(tmp_path / "out")]) == 2
    assert "exists" in capsys.readouterr().err
    assert json.loads((tmp_path / "out" / "config.json").read_text()) == before
