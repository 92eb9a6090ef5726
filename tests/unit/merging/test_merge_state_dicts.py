import pytest
import torch

from alignrl.merging import key_seed, merge_state_dicts
from alignrl.merging.dare import DareParams, dare
from alignrl.merging.linear import LinearParams
from alignrl.merging.slerp import SlerpParams, slerp
from alignrl.merging.ties import TiesParams


def _rand(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _sd(seed):
    return {"w": _rand(3, 4, seed=seed), "b": _rand(4, seed=seed + 100), "pos": torch.arange(4)}


def test_applies_the_op_key_by_key_and_copies_integer_buffers():
    sds, base = [_sd(1), _sd(2)], _sd(0)
    p = SlerpParams(t=0.3)
    out = merge_state_dicts("slerp", sds, base, p)
    assert list(out) == ["w", "b", "pos"]
    for k in ("w", "b"):
        assert torch.equal(out[k], slerp([sds[0][k], sds[1][k]], base[k], p))
    assert torch.equal(out["pos"], torch.arange(4)) and out["pos"].data_ptr() != sds[0]["pos"].data_ptr()


def test_identical_dicts_are_a_fixed_point_and_inputs_untouched():
    sd = _sd(1)
    copies = [{k: v.clone() for k, v in sd.items()} for _ in range(3)]
    out = merge_state_dicts("linear", copies, None, LinearParams(weights=(0.2, 0.3, 0.5)))
    for k in sd:
        torch.testing.assert_close(out[k], sd[k], rtol=4e-16, atol=0)
        assert torch.equal(copies[0][k], sd[k])


def test_default_params_and_type_check():
    sds = [_sd(1), _sd(2)]
    out = merge_state_dicts("linear", sds)
    torch.testing.assert_close(out["w"], (sds[0]["w"] + sds[1]["w"]) / 2, rtol=0, atol=1e-15)
    with pytest.raises(TypeError, match="LinearParams"):
        merge_state_dicts("linear", sds, None, TiesParams())
    with pytest.raises(KeyError, match="unknown merge method"):
        merge_state_dicts("lerp_typo", sds)


def test_mismatches_raise():
    a, b = _sd(1), _sd(2)
    with pytest.raises(ValueError, match="keys differ"):
        merge_state_dicts("linear", [a, {k: v for k, v in b.items() if k != "b"}])
    with pytest.raises(ValueError, match="shape"):
        merge_state_dicts("linear", [a, {**b, "w": _rand(4, 3)}])
    with pytest.raises(ValueError, match="non-floating"):
        merge_state_dicts("linear", [a, {**b, "pos": torch.arange(4) + 1}])
    with pytest.raises(ValueError, match="keys differ"):
        merge_state_dicts("ties", [a, b], {"w": a["w"]})
    with pytest.raises(ValueError, match="no state dicts"):
        merge_state_dicts("linear", [])


def test_dare_gets_a_distinct_seed_per_key():
    # two same-shaped keys with the same values must not share a drop mask
    base = {"q": torch.zeros(256, dtype=torch.float64), "k": torch.zeros(256, dtype=torch.float64)}
    model = {"q": torch.ones(256, dtype=torch.float64), "k": torch.ones(256, dtype=torch.float64)}
    p = DareParams(drop=0.5, seed=11)
    out = merge_state_dicts("dare", [model], base, p)
    assert not torch.equal(out["q"], out["k"])
    assert torch.equal(out["q"], dare([model["q"]], base["q"], DareParams(drop=0.5, seed=key_seed(11, "q"))))
    assert torch.equal(out["q"], merge_state_dicts("dare", [model], base, p)["q"])  # deterministic
