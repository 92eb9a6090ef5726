import pytest
import torch

from alignrl.merging.liti import LitiParams, liti
from alignrl.merging.slerp import SlerpParams, slerp
from alignrl.registry import MERGES


def _rand(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_registered_with_params():
    entry = MERGES.entry("liti")
    assert entry.fn is liti and entry.params is LitiParams


def test_by_hand():
    init = torch.tensor([0.0, 10.0], dtype=torch.float64)
    merged = torch.tensor([4.0, 2.0], dtype=torch.float64)
    # init + 0.25·(merged − init) = [0 + 1, 10 − 2] = [1, 8]
    out = liti([merged], init, LitiParams(eta=0.25))
    torch.testing.assert_close(out, torch.tensor([1.0, 8.0], dtype=torch.float64), rtol=0, atol=1e-15)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_ends_are_exact(dtype):
    init, merged = _rand(4, 4, seed=0).to(dtype), _rand(4, 4, seed=1).to(dtype)
    assert torch.equal(liti([merged], init, LitiParams(eta=0.0)), init)
    assert torch.equal(liti([merged], init, LitiParams(eta=1.0)), merged)


def test_warp_stage_three_on_a_slerp_merge():
    # WARP: θ = init + η·(slerp(θ_1, θ_2; init) − init); the LITI line passes through init and the merge
    init, a, b = (_rand(3, 5, seed=s) for s in range(3))
    merged = slerp([a, b], init, SlerpParams(t=0.5))
    for eta in (0.0, 0.3, 1.0):
        out = liti([merged], init, LitiParams(eta=eta))
        torch.testing.assert_close(out, init + eta * (merged - init), rtol=0, atol=1e-14)


def test_bf16_preserved_and_inputs_checked():
    init, merged = _rand(8, seed=0, dtype=torch.float32).bfloat16(), _rand(8, seed=1, dtype=torch.float32).bfloat16()
    out = liti([merged], init, LitiParams(eta=0.3))
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, liti([merged.float()], init.float(), LitiParams(eta=0.3)).bfloat16())
    with pytest.raises(ValueError, match="needs a base"):
        liti([merged], None, LitiParams(eta=0.3))
    with pytest.raises(ValueError, match="expected 1"):
        liti([merged, merged], init, LitiParams(eta=0.3))
    with pytest.raises(ValueError, match="eta must be"):
        LitiParams(eta=-0.1)
