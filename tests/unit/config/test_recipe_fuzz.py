"""Property: no mutation of a valid recipe makes ``alignrl validate`` raise; it answers 0 (still valid) or 2 (a
message naming what is wrong). Hypothesis derandomized: the same examples on every run, so it cannot flake."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alignrl.cli import main

REPO = Path(__file__).resolve().parents[3]
TINY = {"tiny": {"hidden": 64, "layers": 1, "heads": 2}}
BASES = {
    "sft": yaml.safe_load((REPO / "recipes" / "tiny" / "demo_sft_arithmetic.yaml").read_text()),
    "grpo": {"name": "g", "policy": TINY, "algorithm": {"name": "grpo", "group_size": 4},
             "anchors": [{"model": "init", "estimator": "k3", "coef": 0.1}],
             "data": {"train": "tasks://arithmetic?digits=1"},
             "rollout": {"engine": "hf", "max_new_tokens": 4, "max_staleness": 1},
             "learner": {"micro_batch_size": 8, "micro_batch_tokens": 64},
             "train": {"steps": 2, "batch_size": 16, "max_bad_steps": 2}},
    "dpo": {"name": "d", "policy": TINY, "algorithm": {"name": "preference", "loss": {"name": "dpo", "beta": 0.1}},
            "data": {"train": "prefs://arithmetic?digits=1"}, "learner": {"micro_batch_size": 8},
            "train": {"steps": 2, "batch_size": 8}},
}


def _paths(node, prefix=()):
    """Every key path of a nested dict (list items by index)."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        yield prefix + (key,)
        yield from _paths(value, prefix + (key,))


VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10**9, 10**9), st.floats(allow_nan=True, allow_infinity=True),
                   st.text(max_size=12), st.lists(st.integers(-3, 3), max_size=3),
                   st.dictionaries(st.text(max_size=6), st.integers(-3, 3), max_size=2))


@st.composite
def mutated(draw):
    base = draw(st.sampled_from(sorted(BASES)))
    data = copy.deepcopy(BASES[base])
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(data))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["set", "delete", "add"]))
        if action == "set":
            parent[path[-1]] = draw(VALUES)
        elif action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=8))] = draw(VALUES)
    return data


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(recipe=mutated())
def test_random_recipe_mutations_never_raise(recipe, tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("fuzz") / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True))
    assert main(["validate", str(path)]) in (0, 2)


@pytest.mark.parametrize("name", sorted(BASES))
def test_every_base_is_valid_so_mutations_start_from_a_runnable_recipe(name, tmp_path: Path):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(BASES[name]))
    assert main(["validate", str(path)]) == 0
