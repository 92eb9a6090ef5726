import pytest
import torch

from alignrl.merging.task_arithmetic import TaskArithmeticParams, task_arithmetic
from alignrl.registry import MERGES


def _rand(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_registered_with_params():
    entry = MERGES.entry("task_arithmetic")
    assert entry.fn is task_arithmetic and entry.params is TaskArithmeticParams


def test_by_hand():
    base = torch.tensor([1.0, 1.0], dtype=torch.float64)
    t1 = torch.tensor([2.0, 0.0], dtype=torch.float64)  # δ1 = [1, −1]
    t2 = torch.tensor([1.0, 3.0], dtype=torch.float64)  # δ2 = [0, 2]
    # base + 2·(1·δ1 + 0.5·δ2) = [1, 1] + 2·[1, 0] = [3, 1]
    out = task_arithmetic([t1, t2], base, TaskArithmeticParams(weights=(1.0, 0.5), lam=2.0))
    torch.testing.assert_close(out, torch.tensor([3.0, 1.0], dtype=torch.float64), rtol=0, atol=1e-15)


def test_one_model_with_unit_scale_returns_it():
    base, t = _rand(5, 3, seed=0), _rand(5, 3, seed=1)
    torch.testing.assert_close(task_arithmetic([t], base, TaskArithmeticParams()), t, rtol=0, atol=1e-15)


def test_equals_sum_of_deltas_brute_force():
    base = _rand(4, seed=0)
    ts = [_rand(4, seed=s) for s in (1, 2, 3)]
    w, lam = (0.5, -1.0, 2.0), 0.7
    expected = [base[i].item() + lam * sum(wm * (t[i].item() - base[i].item()) for wm, t in zip(w, ts)) for i in range(4)]
    out = task_arithmetic(ts, base, TaskArithmeticParams(weights=w, lam=lam))
    torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-14)


def test_bf16_preserved_and_base_required():
    base, t = _rand(6, seed=0, dtype=torch.float32).bfloat16(), _rand(6, seed=1, dtype=torch.float32).bfloat16()
    out = task_arithmetic([t], base, TaskArithmeticParams(lam=0.5))
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, task_arithmetic([t.float()], base.float(), TaskArithmeticParams(lam=0.5)).bfloat16())
    with pytest.raises(ValueError, match="needs a base"):
        task_arithmetic([t], None, TaskArithmeticParams())
