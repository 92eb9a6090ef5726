"""SALSA's start: ``policy: {soup: {paths, weights}}`` builds the weighted average of model folders into the
run's init/ folder (the policy's start and its init anchor), refusing bad soups by key."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from alignrl.config import load_recipe
from alignrl.errors import UserError
from alignrl.loops.common import build_soup_folder, prepare_policy


@pytest.fixture(scope="module")
def ingredients(tmp_path_factory) -> list[Path]:
    from alignrl.models.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("soup")
    return [build_tiny_model(root / f"m{i}", hidden=32, layers=1, heads=2, max_positions=16, seed=i) for i in range(3)]


def _recipe(tmp_path: Path, policy: str) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(f"""\
name: soup
policy: {policy}
algorithm: {{name: sft}}
data: {{train: "tasks://arithmetic?digits=1&n=50&split=train"}}
train: {{steps: 1, batch_size: 32}}
""")
    return path


def test_the_policy_starts_from_the_weighted_average(tmp_path, ingredients):
    paths = ", ".join(str(p) for p in ingredients)
    cfg = load_recipe(_recipe(tmp_path, f"{{soup: {{paths: [{paths}], weights: [1, 1, 2]}}}}"))
    init = prepare_policy(cfg, tmp_path / "run")
    assert init == tmp_path / "run" / "init" and (init / "tokenizer.json").is_file()
    got = load_file(str(init / "model.safetensors"))
    parts = [load_file(str(p / "model.safetensors")) for p in ingredients]
    for name in got:
        expected = (parts[0][name] + parts[1][name] + 2 * parts[2][name]) / 4
        assert torch.allclose(got[name], expected, atol=1e-6), name
    assert not torch.allclose(got["model.embed_tokens.weight"], parts[0]["model.embed_tokens.weight"])


def test_bad_soups_are_refused_by_key(tmp_path, ingredients):
    a = str(ingredients[0])
    with pytest.raises(UserError, match=r"policy.soup.paths\[1\].*does not exist"):
        load_recipe(_recipe(tmp_path, f"{{soup: {{paths: [{a}, {tmp_path / 'nowhere'}]}}}}"))
    with pytest.raises(UserError, match="at least two"):
        load_recipe(_recipe(tmp_path, f"{{soup: {{paths: [{a}]}}}}"))
    with pytest.raises(UserError, match="exactly one of"):
        load_recipe(_recipe(tmp_path, f"{{path: {a}, soup: {{paths: [{a}, {a}]}}}}"))
    with pytest.raises(UserError, match="weights must be 2"):
        load_recipe(_recipe(tmp_path, f"{{soup: {{paths: [{a}, {a}], weights: [1]}}}}"))


def test_ingredients_of_another_shape_are_refused(tmp_path, ingredients):
    from alignrl.models.tiny import build_tiny_model

    wide = build_tiny_model(tmp_path / "wide", hidden=64, layers=1, heads=2, max_positions=16)
    with pytest.raises(UserError, match="cannot be averaged"):
        build_soup_folder((str(ingredients[0]), str(wide)), None, tmp_path / "out")
    assert not (tmp_path / "out").exists()
