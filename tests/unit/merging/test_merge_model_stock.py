import math

import pytest
import torch

from alignrl.merging.model_stock import ModelStockParams, model_stock
from alignrl.registry import MERGES


def _rand(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_registered_with_params():
    entry = MERGES.entry("model_stock")
    assert entry.fn is model_stock and entry.params is ModelStockParams


def test_sixty_degrees_by_hand():
    # δ1 = (1, 0), δ2 = (1/2, √3/2): cos θ = 1/2, t = 2·(1/2) / (1 + 1/2) = 2/3,
    # mean δ = (3/4, √3/4), θ_H = base + (2/3)·(3/4, √3/4) = base + (1/2, √3/6)
    base = torch.tensor([1.0, -1.0], dtype=torch.float64)
    d1 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    d2 = torch.tensor([0.5, math.sqrt(3) / 2], dtype=torch.float64)
    out = model_stock([base + d1, base + d2], base, ModelStockParams())
    torch.testing.assert_close(out, base + torch.tensor([0.5, math.sqrt(3) / 6], dtype=torch.float64), rtol=0, atol=1e-15)


def test_orthogonal_keeps_base_and_identical_gives_average():
    base = torch.zeros(2, dtype=torch.float64)
    e1, e2 = torch.tensor([1.0, 0.0], dtype=torch.float64), torch.tensor([0.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(model_stock([e1, e2], base, ModelStockParams()), base, rtol=0, atol=1e-15)
    # cos θ = 1 -> t = N / N = 1 -> the average of the fine-tuned models
    th = _rand(3, 4, seed=1)
    out = model_stock([th, th.clone(), th.clone()], torch.zeros(3, 4, dtype=torch.float64), ModelStockParams())
    torch.testing.assert_close(out, th, rtol=0, atol=1e-14)


def test_three_models_match_formula_in_python_floats():
    base = _rand(6, seed=0)
    ths = [_rand(6, seed=s) for s in (1, 2, 3)]
    ds = [[t[i].item() - base[i].item() for i in range(6)] for t in ths]

    def cos(a, b):
        return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))

    c = (cos(ds[0], ds[1]) + cos(ds[0], ds[2]) + cos(ds[1], ds[2])) / 3
    t = 3 * c / (1 + 2 * c)
    expected = [base[i].item() + t * sum(d[i] for d in ds) / 3 for i in range(6)]
    out = model_stock(ths, base, ModelStockParams())
    torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-14)


def test_filter_wise_is_row_by_row():
    base = _rand(4, 5, seed=0)
    ths = [_rand(4, 5, seed=s) for s in (1, 2)]
    out = model_stock(ths, base, ModelStockParams(filter_wise=True))
    rows = [model_stock([t[r] for t in ths], base[r], ModelStockParams()) for r in range(4)]
    torch.testing.assert_close(out, torch.stack(rows), rtol=0, atol=1e-15)


def test_singular_ratio_keeps_base():
    # N = 2, δ2 = −δ1: 1 + cos θ = 0, no finite ratio -> base
    base, d = _rand(5, seed=0), _rand(5, seed=1)
    out = model_stock([base + d, base - d], base, ModelStockParams())
    torch.testing.assert_close(out, base, rtol=0, atol=1e-15)
    assert torch.isfinite(out).all()


def test_bf16_preserved_and_needs_two_models():
    base, a, b = (_rand(8, 8, seed=s, dtype=torch.float32).bfloat16() for s in range(3))
    out = model_stock([a, b], base, ModelStockParams())
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, model_stock([a.float(), b.float()], base.float(), ModelStockParams()).bfloat16())
    with pytest.raises(ValueError, match="model tensors"):
        model_stock([a], base, ModelStockParams())
