"""Merge-config parameter resolution (mergekit 0.1.5's rules): gradients over the decoder layers, filter
entries (first substring match wins, no match falls back), per-model -> top-level -> default precedence."""

from pathlib import Path

import pytest

from alignrl.errors import UserError
from alignrl.merge_config import MergeConfig, MergeInput, layer_position, parameter, resolve_value


def test_layer_position_is_i_over_layers_minus_one_and_zero_outside_the_layers():
    assert layer_position("model.layers.0.mlp.up_proj.weight", 5) == 0.0
    assert layer_position("model.layers.3.mlp.up_proj.weight", 5) == 0.75
    assert layer_position("model.layers.4.self_attn.q_proj.weight", 5) == 1.0
    assert layer_position("model.layers.0.mlp.up_proj.weight", 1) == 1.0  # one layer: the gradient's end
    for name in ("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"):
        assert layer_position(name, 5) == 0.0


def test_a_gradient_is_linear_interpolation_between_evenly_spaced_anchors():
    assert resolve_value([0.0, 1.0], "x", 0.3) == pytest.approx(0.3)
    assert resolve_value([0.0, 1.0, 0.0], "x", 0.25) == pytest.approx(0.5)
    assert resolve_value([0.0, 1.0, 0.0], "x", 0.75) == pytest.approx(0.5)
    assert resolve_value([2.0, 4.0], "x", 1.0) == 4.0
    assert resolve_value([0.7], "x", 0.9) == 0.7 and resolve_value(0.3, "x", 0.9) == 0.3


def test_filters_take_the_first_matching_entry_and_fall_through_when_none_matches():
    value = [{"filter": "self_attn", "value": [0.0, 1.0]}, {"filter": "attn", "value": 0.9}, {"value": 0.5}]
    assert resolve_value(value, "model.layers.1.self_attn.q_proj.weight", 0.5) == pytest.approx(0.5)
    assert resolve_value(value, "model.layers.1.cross_attn.weight", 0.5) == 0.9
    assert resolve_value(value, "model.layers.1.mlp.up_proj.weight", 0.5) == 0.5
    assert resolve_value([{"filter": "mlp", "value": 1.0}], "model.norm.weight", 0.0) is None


def test_precedence_is_per_model_then_top_level_then_default():
    a = MergeInput("a", {"weight": 0.2, "density": [{"filter": "mlp", "value": 0.3}]}, "models[0]")
    b = MergeInput("b", {}, "models[1]")
    cfg = MergeConfig(merge_method="ties", models=(a, b), base_model="base", parameters={"weight": 0.9},
                      source=Path("m.yaml"))
    assert parameter(cfg, "weight", "model.layers.0.mlp.w", 0.0, a) == 0.2
    assert parameter(cfg, "weight", "model.layers.0.mlp.w", 0.0, b) == 0.9
    assert parameter(cfg, "density", "model.layers.0.mlp.w", 0.0, a) == 0.3
    assert parameter(cfg, "density", "model.layers.0.self_attn.w", 0.0, a) == 1.0  # falls back to the default
    assert parameter(cfg, "normalize", "model.layers.0.mlp.w", 0.0) is True
    bare = MergeConfig(merge_method="ties", models=(b,), base_model="base", source=Path("m.yaml"))
    with pytest.raises(UserError, match=r"models\[1\].parameters.weight: ties needs 'weight'"):
        parameter(bare, "weight", "model.layers.0.mlp.w", 0.0, b)
