"""Peer comparison: our per-tensor ops against mergekit 0.1.5's merge methods on identical float64 tensors.

mergekit is LGPL-3.0 and only called here, never copied. Max abs diffs measured on these inputs (float64,
32×48): linear 4.4e-16, slerp 0 (raw) / 8.9e-16 (task vectors), task_arithmetic 0, ties 0 (density 0.2,
0.5, 1), model_stock 7.2e-16; the assertions allow 1e-12. (In bf16 mergekit's task arithmetic / TIES
compute in bf16; ours upcast to fp32, so bf16 results differ by more and are not compared here.)
"""

import pytest
import torch

from alignrl.merging.dare import DareParams, dare
from alignrl.merging.linear import LinearParams, linear
from alignrl.merging.model_stock import ModelStockParams, model_stock
from alignrl.merging.slerp import SlerpParams, slerp
from alignrl.merging.task_arithmetic import TaskArithmeticParams, task_arithmetic
from alignrl.merging.ties import TiesParams, ties

api = pytest.importorskip(
    "mergekit.merge_methods.api",
    reason="mergekit not installed (test-only peer: pip install mergekit==0.1.5, which adds scipy and immutables)",
)
TOL = 1e-12


def _inputs(n, shape=(32, 48)):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(*shape, generator=g, dtype=torch.float64) for _ in range(n)]


def _max_diff(a, b):
    return (a - b).abs().max().item()


def test_linear_matches_mergekit():
    xs = _inputs(3)
    ours = linear(xs, None, LinearParams(weights=(0.3, 0.5, 0.9)))
    theirs = api.merge_tensors(xs, "linear", parameters={"weight": [0.3, 0.5, 0.9]})
    assert _max_diff(ours, theirs) <= TOL


@pytest.mark.parametrize("t", [0.25, 0.5, 0.8])
def test_slerp_matches_mergekit(t):
    base, a, b = _inputs(3)
    # mergekit interpolates two tensors (its base is the t = 0 end): compare raw and task-vector forms
    theirs = api.merge_tensors([a, b], "slerp", parameters={"t": t}, base_index=0)
    assert _max_diff(slerp([a, b], None, SlerpParams(t=t)), theirs) <= TOL
    theirs_tv = base + api.merge_tensors([a - base, b - base], "slerp", parameters={"t": t}, base_index=0)
    assert _max_diff(slerp([a, b], base, SlerpParams(t=t)), theirs_tv) <= TOL


def test_task_arithmetic_matches_mergekit():
    base, *models = _inputs(4)
    ours = task_arithmetic(models, base, TaskArithmeticParams(weights=(0.5, 1.0, -0.3), lam=0.7))
    theirs = api.merge_tensors(
        [base, *models], "task_arithmetic", parameters={"weight": [0.5, 1.0, -0.3], "lambda": 0.7}, base_index=0
    )
    assert _max_diff(ours, theirs) <= TOL


@pytest.mark.parametrize("density", [0.2, 0.5, 1.0])
def test_ties_matches_mergekit(density):
    base, *models = _inputs(4)
    ours = ties(models, base, TiesParams(density=density, weights=(1.0, 0.5, 2.0), lam=0.9))
    theirs = api.merge_tensors(
        [base, *models], "ties",
        parameters={"weight": [1.0, 0.5, 2.0], "density": density, "lambda": 0.9}, base_index=0,
    )
    assert _max_diff(ours, theirs) <= TOL


@pytest.mark.parametrize("filter_wise", [False, True])
def test_model_stock_matches_mergekit(filter_wise):
    base, *models = _inputs(4)
    ours = model_stock(models, base, ModelStockParams(filter_wise=filter_wise))
    theirs = api.merge_tensors([base, *models], "model_stock", parameters={"filter_wise": filter_wise}, base_index=0)
    assert _max_diff(ours, theirs) <= TOL


@pytest.mark.parametrize("normalize", [True, False])
def test_ties_with_per_model_densities_matches_mergekit(normalize):
    base, *models = _inputs(4)
    ours = ties(models, base, TiesParams(density=(0.3, 0.6, 0.9), weights=(1.0, 0.5, 2.0), normalize=normalize))
    theirs = api.merge_tensors(
        [base, *models], "ties",
        parameters={"weight": [1.0, 0.5, 2.0], "density": [0.3, 0.6, 0.9], "normalize": normalize}, base_index=0,
    )
    assert _max_diff(ours, theirs) <= TOL


@pytest.mark.parametrize("method, variant", [("dare_linear", "linear"), ("dare_ties", "ties")])
def test_dare_at_density_one_matches_mergekit_with_its_defaults(method, variant):
    """mergekit draws DARE's masks from the global RNG, so only the mask-free case is comparable bit for bit:
    density 1 with mergekit's rescale (L1) and normalize (false) defaults."""
    base, *models = _inputs(4)
    ours = dare(models, base, DareParams(drop=0.0, variant=variant, weights=(1.0, 0.5, 2.0), rescale="l1",
                                         normalize=False))
    theirs = api.merge_tensors([base, *models], method, parameters={"weight": [1.0, 0.5, 2.0], "density": 1.0},
                               base_index=0)
    assert _max_diff(ours, theirs) <= TOL
