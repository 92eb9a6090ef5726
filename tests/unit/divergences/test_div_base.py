"""The Divergence entry type, the registry, and the chunked full-form driver (memory, dtypes, grads)."""

import dataclasses
import math

import pytest
import torch

import alignrl.divergences  # noqa: F401  (registers)
from alignrl.divergences import KL_ESTIMATORS, Divergence, DivergenceParams, register_divergence
from alignrl.divergences.base import TEMPS_PER_ROW, blocks, chunked_rowwise
from alignrl.registry import DIVERGENCES

NAMES = [
    "reverse_kl", "forward_kl", "js", "generalized_jsd", "alpha", "tv", "chi2", "hellinger", "tsallis",
    "skew_kl", "skew_reverse_kl", "akl", "f_divergence", "jeffreys",
]


def params(name, **kw):
    if name == "f_divergence":  # reverse-KL generator
        kw = {"f": lambda u: u * torch.log(u), "f_prime": lambda u: torch.log(u) + 1.0, **kw}
    return DIVERGENCES.entry(name).params(**kw)


@pytest.fixture
def restore_registries():
    snaps = (DIVERGENCES.snapshot(), KL_ESTIMATORS.snapshot())
    yield
    DIVERGENCES.restore(snaps[0])
    KL_ESTIMATORS.restore(snaps[1])


def test_registered_names_and_docs():
    assert set(NAMES) <= set(DIVERGENCES.names())
    assert KL_ESTIMATORS.names() == ["kl_importance_weighted", "kl_k1", "kl_k2", "kl_k3"]
    for name in NAMES:
        entry = DIVERGENCES.entry(name)
        assert isinstance(entry.fn, Divergence) and entry.fn.name == name
        assert "Args" in entry.fn.__doc__ and "Returns" in entry.fn.__doc__
        assert issubclass(entry.params, DivergenceParams)
        assert entry.params.__dataclass_params__.frozen and hasattr(entry.params, "__slots__")
        assert entry.fn.has_sampled == (name != "akl")
        if entry.fn.has_sampled:
            assert "E_{y∼π_ref}" in entry.fn._sampled.__doc__  # states which expectation it is unbiased for


def test_params_are_frozen_and_keyword_only():
    p = params("js")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.chunk_size = 3
    with pytest.raises(TypeError):
        DIVERGENCES.entry("alpha").params(0.3)
    with pytest.raises(ValueError):
        params("js", chunk_size=0)


def test_duplicate_registration_raises(restore_registries):
    with pytest.raises(ValueError, match="already registered"):
        register_divergence("js", DivergenceParams)(lambda lp, lq, p: lp.sum(-1))


def test_akl_has_no_sampled_form():
    with pytest.raises(NotImplementedError, match="akl"):
        DIVERGENCES.get("akl")(torch.zeros(2), params("akl"))


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shapes differ"):
        DIVERGENCES.get("js").full(torch.zeros(2, 3, 4), torch.zeros(2, 3, 5), params("js"))


@pytest.mark.parametrize("name", NAMES)
def test_zero_at_equality_and_nonnegative(name):
    torch.manual_seed(0)
    d, p = DIVERGENCES.get(name), params(name)
    z = 3.0 * torch.randn(3, 5, 9, dtype=torch.float64)
    torch.testing.assert_close(d.full(z, z, p), torch.zeros(3, 5, dtype=torch.float64), rtol=0, atol=1e-14)
    assert (d.full(z, 3.0 * torch.randn_like(z), p) > 0).all()


@pytest.mark.parametrize("name", NAMES)
def test_bf16_logits_give_fp32_and_fp64_is_kept(name):
    torch.manual_seed(1)
    d, p = DIVERGENCES.get(name), params(name)
    zp = torch.randn(2, 3, 8, dtype=torch.bfloat16, requires_grad=True)
    zq = torch.randn(2, 3, 8, dtype=torch.bfloat16)
    out = d.full(zp, zq, p)
    assert out.dtype == torch.float32
    out.sum().backward()
    assert zp.grad.dtype == torch.bfloat16 and torch.isfinite(zp.grad.float()).all()
    # the value is the fp32 computation on the bf16-rounded logits
    ref = d.dense(torch.log_softmax(zp.detach().float(), -1), torch.log_softmax(zq.float(), -1), p)
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-7)
    assert d.full(zp.detach().double(), zq.double(), p).dtype == torch.float64
    if d.has_sampled:
        f, fp = d(torch.randn(4, dtype=torch.bfloat16), p)
        assert f.dtype == fp.dtype == torch.float32


@pytest.mark.parametrize("name", NAMES)
def test_chunking_changes_nothing(name):
    """chunk_size 1, 5 and 'no chunking' give the same values and gradients in both logits (fp64)."""
    torch.manual_seed(2)
    d = DIVERGENCES.get(name)
    zp0, zq0 = torch.randn(2, 12, 5, dtype=torch.float64), torch.randn(2, 12, 5, dtype=torch.float64)
    results = []
    for chunk in (1, 5, 10**9):
        zp, zq = zp0.clone().requires_grad_(), zq0.clone().requires_grad_()
        out = d.full(zp, zq, params(name, chunk_size=chunk))
        (out * torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        results.append((out.detach(), zp.grad, zq.grad))
    lp, lq = torch.log_softmax(zp0, -1).requires_grad_(), torch.log_softmax(zq0, -1)
    for out, gp, gq in results[1:]:
        torch.testing.assert_close(out, results[0][0], rtol=0, atol=1e-14)
        torch.testing.assert_close(gp, results[0][1], rtol=0, atol=1e-14)
        torch.testing.assert_close(gq, results[0][2], rtol=0, atol=1e-14)
    torch.testing.assert_close(results[0][0], d.dense(lp, lq, params(name)), rtol=0, atol=1e-14)


def test_chunked_driver_gradcheck():
    torch.manual_seed(3)
    zp = torch.randn(2, 5, 4, dtype=torch.float64, requires_grad=True)
    zq = torch.randn(2, 5, 4, dtype=torch.float64, requires_grad=True)
    js = DIVERGENCES.get("js")
    assert torch.autograd.gradcheck(lambda a, b: js.full(a, b, params("js", chunk_size=2)), (zp, zq))


def test_blocks_cover_grid_and_respect_limits():
    for n_lead, n_pos, chunk in [(1, 1, 256), (3, 5, 2), (4, 1000, 256), (300, 7, 256), (2, 100, 10**6)]:
        seen = torch.zeros(n_lead, n_pos, dtype=torch.long)
        for b0, b1, t0, t1 in blocks(n_lead, n_pos, chunk):
            rows = (b1 - b0) * (t1 - t0)
            assert rows <= max(1, min(chunk, n_lead * n_pos // TEMPS_PER_ROW))
            seen[b0:b1, t0:t1] += 1
        assert (seen == 1).all()


def test_full_form_keeps_no_vocab_sized_activation():
    """Everything autograd saves for backward is an input (aliased); nothing V-sized is computed and kept."""
    torch.manual_seed(4)
    zp = torch.randn(2, 12, 50, dtype=torch.float64, requires_grad=True)
    zq = torch.randn(2, 12, 50, dtype=torch.float64)
    inputs = {zp.untyped_storage().data_ptr(), zq.untyped_storage().data_ptr()}
    for name in NAMES:
        kept = []

        def pack(t):
            if t.numel() >= 50 and t.untyped_storage().data_ptr() not in inputs:
                kept.append(tuple(t.shape))
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = DIVERGENCES.get(name).full(zp, zq, params(name, chunk_size=4))
        assert kept == [], (name, kept)
        out.sum().backward()
    # the same divergence computed eagerly keeps several (B, T, V) tensors: the hook does see them
    kept = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t.numel()) or t, lambda t: t):
        DIVERGENCES.get("js").dense(torch.log_softmax(zp, -1), torch.log_softmax(zq, -1), params("js"))
    assert max(kept) == zp.numel()


def test_driver_handles_views_and_2d_inputs():
    torch.manual_seed(5)
    z = torch.randn(2, 6, 5, dtype=torch.float64, requires_grad=True)
    zq = torch.randn(2, 6, 5, dtype=torch.float64)
    rkl = DIVERGENCES.get("reverse_kl")
    p = params("reverse_kl", chunk_size=3)
    out = rkl.full(z[:, :-1], zq[:, 1:], p)  # non-contiguous slice along T: no copy, same values
    ref = rkl.dense(torch.log_softmax(z[:, :-1], -1), torch.log_softmax(zq[:, 1:], -1), p)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-14)
    out.sum().backward()
    assert (z.grad[:, -1] == 0).all()
    flat = rkl.full(z.detach().reshape(12, 5), zq.reshape(12, 5), p)
    torch.testing.assert_close(flat, rkl.full(z.detach(), zq, p).reshape(12), rtol=0, atol=1e-15)
    assert rkl.full(torch.zeros(0, 3, 5), torch.zeros(0, 3, 5), p).shape == (0, 3)


def test_temperature_scales_both_logits():
    torch.manual_seed(6)
    zp, zq = torch.randn(2, 3, 7, dtype=torch.float64), torch.randn(2, 3, 7, dtype=torch.float64)
    js = DIVERGENCES.get("js")
    torch.testing.assert_close(
        js.full(zp, zq, params("js"), temperature=2.0), js.full(zp / 2.0, zq / 2.0, params("js")), rtol=0, atol=1e-15
    )


def test_chunked_rowwise_result_dtype_and_unused_input_grad():
    x = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    out = chunked_rowwise(lambda a, b: a.sum(-1), (x, y), 1)  # b unused: its gradient is 0, not an error
    out.sum().backward()
    assert (x.grad == 1).all() and (y.grad == 0).all()
    assert math.isclose(out.sum().item(), x.sum().item(), rel_tol=1e-12)
