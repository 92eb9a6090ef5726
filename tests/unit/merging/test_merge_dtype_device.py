"""Every registered merge returns the input dtype on the input device, and bf16 results equal the fp32
computation rounded once (the ops upcast bf16 -> fp32 exactly, compute, then cast back)."""

import pytest
import torch

import alignrl.merging  # noqa: F401  (registers the ops)
from alignrl.merging.dare import DareParams
from alignrl.merging.linear import LinearParams
from alignrl.merging.liti import LitiParams
from alignrl.merging.model_stock import ModelStockParams
from alignrl.merging.slerp import SlerpParams
from alignrl.merging.task_arithmetic import TaskArithmeticParams
from alignrl.merging.ties import TiesParams
from alignrl.registry import MERGES

CASES = {  # name -> (params, number of model tensors)
    "linear": (LinearParams(weights=(0.3, 0.7)), 2),
    "slerp": (SlerpParams(t=0.4), 2),
    "liti": (LitiParams(eta=0.3), 1),
    "task_arithmetic": (TaskArithmeticParams(lam=0.5), 2),
    "ties": (TiesParams(density=0.5), 3),
    "dare": (DareParams(drop=0.5, seed=3, variant="ties"), 3),
    "model_stock": (ModelStockParams(filter_wise=True), 3),
}
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def test_every_registered_op_is_covered():
    assert set(CASES) == set(MERGES.names())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
@pytest.mark.parametrize("name", sorted(CASES))
def test_dtype_and_device_preserved(name, dtype, device):
    params, n = CASES[name]
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(16, 8, generator=g).to(device=device, dtype=dtype) for _ in range(n + 1)]
    base, models = xs[0], xs[1:]
    out = MERGES.get(name)(models, base, params)
    assert out.dtype == dtype and out.device == base.device and out.shape == base.shape
    if dtype in (torch.bfloat16, torch.float16):
        ref = MERGES.get(name)([m.float() for m in models], base.float(), params)
        assert torch.equal(out, ref.to(dtype))
