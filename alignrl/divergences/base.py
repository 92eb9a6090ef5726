"""The divergence entry type, its registration decorator, the chunked full-vocabulary driver, and the
numerically careful helpers every family shares.

Conventions (all modules): p is the policy / student (π_θ, q_θ), q the anchor (π_ref, teacher, EMA,
soup); D(p‖q) is per position; u = p/q, log u = logp − logq; ℓ = log p − log q over the vocabulary.
An f-divergence is D_f(p‖q) = Σ_v q(v)·f(p(v)/q(v)) = E_{v∼q}[f(u)] with f convex, f(1) = 0
(Csiszár 1967; Ali & Silvey 1966).

Memory: the full form never keeps a (B, T, V) activation. ``chunked_rowwise`` runs the per-row kernel on
blocks of at most ``chunk_size`` positions (and at most N/TEMPS_PER_ROW of the N positions, so a block's
float32 temporaries stay below one (B, T, V) float32 tensor, and at most BLOCK_BYTES per temporary), under no_grad; the backward pass recomputes
each block and writes its gradient into one preallocated gradient tensor per input (no per-block
full-size zero fill, unlike autograd through slices or torch.utils.checkpoint). Peak beyond the inputs:
that gradient buffer (input dtype; autograd adds it into .grad) plus one block's temporaries.
Zero-probability entries (−inf log-probs: padded vocabulary, constrained decoding, masked logits):
a term weighted by a probability that is exactly 0 contributes exactly 0, with a finite (zero) gradient,
whatever it multiplies (0·log 0 = 0·log(0/0) = 0·log(0/q) = 0): ``weighted``/``expect`` for
Σ w·x and ``weighted_expm1``/``expm1_ratio`` for Σ w·(e^{c·x} − 1)/c, and ``log_mix`` gives log 0 with a
zero gradient when both parts are 0. An entry where both distributions are 0 therefore contributes
nothing, to the value or the gradient: every registered divergence equals its value on the vocabulary
with that entry removed. Where the anchor is 0 and the other distribution is not, a divergence that is
+inf by definition (KL(p‖q) with q = 0 < p, and the like) stays +inf, also when the nonzero probability
underflows to 0 in the working precision (a finite log-prob below ≈ −104 in fp32): mask both models'
logits with −inf, not one with a finite floor. Such a +inf term is a constant (no gradient; gradients
stay finite, see ``weighted``): it shows in the value only. Each family module states its own q = 0
behaviour.
Deviations from the papers: none here (see each family module).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch

from alignrl.ops import upcast
from alignrl.registry import DIVERGENCES, Registry

DenseFn = Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]
SampledFn = Callable[[torch.Tensor, Any], "tuple[torch.Tensor, torch.Tensor]"]

KL_ESTIMATORS: Registry = Registry("kl estimator")
"""Sampled KL(π‖π_ref) estimators: ``est(logp, logp_ref, logp_behavior, p) -> (B, T)`` (see kl.py)."""

TEMPS_PER_ROW = 16
"""Upper bound on the float32 (rows, V) temporaries one block holds at once, forward or backward recompute
(measured on CPU with mmap-backed allocations, B·T = 2048, V = 8192: forward 5 (tv, hellinger) to 10.5
(alpha, tsallis, chi2); forward + backward 5 to 15.8 (chi2), the zero-probability masks included).
Blocks are capped at N // TEMPS_PER_ROW positions."""

BLOCK_BYTES = 8 * 2**20
"""Most bytes of one (rows, X) float32-or-wider temporary in a block. Why a byte cap and not only a row cap:
glibc serves allocations of 32 MiB and more with fresh mmap pages, so every temporary of a 256 × 32768 fp32
block page-faults on first touch (measured: forward-KL fwd+bwd at B=8, T=512, V=32768 took 8.1 s with
256-row blocks, 4.0 s with 128, 3.45 s with 64). 8 MiB keeps blocks in reused heap memory and near cache."""


@dataclass(frozen=True, kw_only=True, slots=True)
class DivergenceParams:
    """Knobs every divergence has; each family's Params subclasses this."""

    chunk_size: int = 256
    """Most positions (rows of V logits) per block in the full and top-k forms; bounds peak memory."""
    log_ratio_clamp: float = 20.0
    """Cap on |log u| before exp() in sampled forms (and χ²'s full form): exp(20) ≈ 4.9e8; fp32 overflows
    at exp(88.7). ``math.inf`` disables it."""

    def __post_init__(self) -> None:
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {self.chunk_size}")
        if not self.log_ratio_clamp > 0:
            raise ValueError(f"log_ratio_clamp must be > 0, got {self.log_ratio_clamp}")


class Divergence:
    """A registered divergence D(p‖q) between a policy p and an anchor q.

    dense(logp, logq, p) -> (...)         D from normalized log-probs over the last dim (the definition)
    full(logits_p, logits_q, p) -> (...)  D per position from two logits tensors (..., V), chunked
    sampled(log_u, p) -> (f(u), f′(u))    generator and derivative at u = p/q (f-divergences only);
                                          ``entry(log_u, p)`` is the same call (STYLE.md's signature)
    """

    def __init__(self, name: str, dense: DenseFn, sampled: SampledFn | None = None) -> None:
        self.name = name
        self.dense = dense
        self._sampled = sampled
        self.__doc__ = dense.__doc__

    @property
    def has_sampled(self) -> bool:
        return self._sampled is not None

    def full(
        self, logits_p: torch.Tensor, logits_q: torch.Tensor, p: DivergenceParams, *, temperature: float = 1.0,
    ) -> torch.Tensor:
        """D(softmax(z_p/τ) ‖ softmax(z_q/τ)) per position.

        Args: logits_p (..., V) policy logits; logits_q (..., V) anchor logits; any float dtype.
        Returns: (...) in float32 (bf16/fp16/fp32 inputs) or float64; differentiable in both logits.
        """
        if logits_p.shape != logits_q.shape:
            raise ValueError(f"logits shapes differ: {tuple(logits_p.shape)} vs {tuple(logits_q.shape)}")

        def kernel(zp: torch.Tensor, zq: torch.Tensor) -> torch.Tensor:
            return self.dense(log_softmax_t(zp, temperature), log_softmax_t(zq, temperature), p)

        return chunked_rowwise(kernel, (logits_p, logits_q), p.chunk_size)

    def sampled(self, log_u: torch.Tensor, p: DivergenceParams) -> tuple[torch.Tensor, torch.Tensor]:
        """(f(u), f′(u)) elementwise from log u = logp − logq. (B, T) -> (B, T), (B, T), fp32 or wider.

        Unbiased for D_f(π‖π_ref) when averaged over y ∼ π_ref; over y ∼ π average f(u)/u instead.
        """
        if self._sampled is None:
            raise NotImplementedError(f"divergence {self.name!r} is not an f-divergence: it has no sampled form")
        return self._sampled(log_u, p)

    __call__ = sampled

    def __repr__(self) -> str:
        return f"Divergence({self.name!r}, sampled={self.has_sampled})"


def register_divergence(
    name: str, params: type, *, sampled: SampledFn | None = None,
) -> Callable[[DenseFn], Divergence]:
    """Decorate a dense kernel ``fn(logp, logq, p) -> (...)``: wraps it in a Divergence and registers it."""

    def decorator(dense: DenseFn) -> Divergence:
        entry = Divergence(name, dense, sampled)
        DIVERGENCES.register(name, params=params)(entry)
        return entry

    return decorator


# ---- numerics -------------------------------------------------------------------------------------------

def log_softmax_t(z: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log softmax(z/τ) over the last dim in float32 or wider."""
    z = upcast(z)
    return torch.log_softmax(z if temperature == 1.0 else z / temperature, dim=-1)


def clamp_log_ratio(log_u: torch.Tensor, p: DivergenceParams) -> torch.Tensor:
    """log u upcast to fp32-or-wider and clamped to ±p.log_ratio_clamp (exp() overflow guard)."""
    return upcast(log_u).clamp(-p.log_ratio_clamp, p.log_ratio_clamp)


def weighted_expm1_(logw: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``weighted_expm1`` that overwrites y (pass a temporary nothing else reads): one buffer fewer."""
    absent = torch.isneginf(logw)
    y.masked_fill_(absent, 0.0)  # w = 0: both branches give 0·(e⁰ − 1) = 0
    infinite = torch.isposinf(y)  # w > 0 here: the term is +inf
    y.masked_fill_(infinite, 0.0)
    pos, neg = y.clamp_min(0.0), y.clamp_max(0.0)
    big = torch.exp(logw + pos) * -torch.expm1(-pos)  # w·eʸ·(1 − e⁻ʸ), y > 0
    small = torch.exp(logw) * torch.expm1(neg)  # w·(eʸ − 1), y ≤ 0 (−w at y = −inf, finite gradient)
    return torch.where(y > 0, big, small).masked_fill_(infinite, math.inf)  # where's backward keeps no output


def weighted_expm1(logw: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """w·(eʸ − 1) with w = exp(logw), finite whenever the true value is (w·eʸ is formed as exp(logw + y)).

    Exactly 0, with zero gradient, where w = 0 (logw = −inf), whatever y is there (NaN from −inf − (−inf)
    or ±inf included): the families using it (α, Tsallis, χ²) weight by a probability whose zero kills
    the term; see each module for the q = 0 < p case. A w > 0 that underflows keeps the exact
    exp(logw + y); w > 0 with y = −inf gives −w, and with y = +inf the constant +inf (zero gradient, as
    ``weighted``). Both branches see clamped, finite arguments, so the unused branch of ``where`` has
    finite gradients.
    """
    return weighted_expm1_(logw, y.clone())


def expm1_ratio(logw: torch.Tensor, x: torch.Tensor, c: float) -> torch.Tensor:
    """w·(e^{c·x} − 1)/c, continuous at c = 0 where it equals w·x (the KL limit of α/Tsallis families).

    0 where w = 0, as ``weighted_expm1`` and ``weighted``.
    """
    if c == 0.0:
        return weighted(logw, x)
    return weighted_expm1_(logw, c * x) / c  # c·x is a fresh temporary


def log_mix(log_a: torch.Tensor, log_b: torch.Tensor, w: float) -> torch.Tensor:
    """log(w·a + (1 − w)·b) for w ∈ [0, 1], exact at the endpoints.

    −inf with zero gradient where a = b = 0 (logaddexp's own gradient there is 0/0 = NaN).
    """
    if w == 1.0:
        return log_a
    if w == 0.0:
        return log_b
    both = torch.isneginf(log_a) & torch.isneginf(log_b)
    a = (log_a + math.log(w)).masked_fill_(both, 0.0)  # in place: add's backward keeps no tensor
    b = (log_b + math.log1p(-w)).masked_fill_(both, 0.0)
    return torch.logaddexp(a, b).masked_fill_(both, -math.inf)  # logaddexp's backward keeps inputs only


def log_ratio(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """log a − log b elementwise, 0 (ratio 1) where a = b = 0: the entry carries no mass in either
    distribution, so any weight multiplying it is 0 and the gradient through it is 0, not NaN."""
    return (log_a - log_b).masked_fill_(torch.isneginf(log_a) & torch.isneginf(log_b), 0.0)


def weighted(logw: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """w(v)·x(v) elementwise, w = exp(logw), with the convention 0·x = 0 where w = 0 exactly (logw = −inf).

    There the term is 0 and its gradient 0 (finite) whatever x is: NaN from −inf − (−inf), or ±inf.
    Where w > 0 and x = ±inf (e.g. x = log w − log q with q = 0) the term is the constant ±inf, also when
    w underflows to 0 in the working precision (0·inf would be NaN), and adds no gradient: w·∞ is never
    formed, so gradients stay finite and a zero upstream gradient (a masked position, a zero mixture
    weight) stays exactly 0. An infinite divergence shows in its value, not in its gradient.
    """
    x = x.masked_fill(torch.isneginf(logw), 0.0)
    pinf, ninf = torch.isposinf(x), torch.isneginf(x)
    x.masked_fill_(pinf | ninf, 0.0)  # the fresh copy, before anything keeps it for backward
    return (torch.exp(logw) * x).masked_fill_(pinf, math.inf).masked_fill_(ninf, -math.inf)


def expect(logw: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """E_{v∼w}[x] = Σ_v w(v)·x(v) over the last dim, w = exp(logw); terms with w = 0 are exactly 0 (``weighted``)."""
    return weighted(logw, x).sum(-1)


def kl_div(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """KL(a‖b) = Σ_v a(v)·(log a(v) − log b(v)) over the last dim, from normalized log-probs.

    Entries with a = 0 add exactly 0 with a zero gradient (b = 0 there too, or not); an entry with
    b = 0 < a makes it +inf, as by definition (constant, no gradient: see ``weighted``). Same value as
    ``expect(log_a, log_a − log_b)`` with the masking done in place on the difference (one buffer fewer).
    """
    x = log_a - log_b  # our own temporary: sub's backward keeps no tensor, so in-place edits are safe
    x.masked_fill_(torch.isneginf(log_a), 0.0)
    infinite = torch.isposinf(x)  # a > 0 = b (x is never −inf where a > 0)
    x.masked_fill_(infinite, 0.0)
    return (torch.exp(log_a) * x).masked_fill_(infinite, math.inf).sum(-1)


# ---- the chunked driver ---------------------------------------------------------------------------------

Block = tuple[int, int, int, int]  # b0, b1, t0, t1 on the (L, T, X) view


def _as_3d(t: torch.Tensor) -> torch.Tensor:
    """(..., T, X) -> (L, T, X), a view whenever the leading dims merge (true for logits[:, :-1])."""
    if t.dim() == 1:
        return t.reshape(1, 1, -1)
    return t.reshape(-1, t.shape[-2], t.shape[-1])


def blocks(n_lead: int, n_pos: int, chunk_size: int, row_bytes: int = 0) -> list[Block]:
    """Blocks of at most min(chunk_size, N // TEMPS_PER_ROW, BLOCK_BYTES // row_bytes) positions covering an
    (L, T) grid; row_bytes is one row's size in the working (float32-or-wider) precision."""
    rows = max(1, min(chunk_size, (n_lead * n_pos) // TEMPS_PER_ROW, BLOCK_BYTES // max(1, row_bytes)))
    bb = min(n_lead, rows)
    c = max(1, min(n_pos, rows // bb))
    return [
        (b0, min(b0 + bb, n_lead), t0, min(t0 + c, n_pos))
        for b0 in range(0, n_lead, bb) for t0 in range(0, n_pos, c)
    ]


class _Chunked(torch.autograd.Function):
    """Forward: kernel per block under no_grad. Backward: recompute per block, write into one buffer."""

    @staticmethod
    def forward(ctx, kernel, block_list, *views):  # type: ignore[override]
        ctx.kernel, ctx.block_list = kernel, block_list
        ctx.save_for_backward(*views)
        out = None
        for b0, b1, t0, t1 in block_list:
            y = kernel(*(v[b0:b1, t0:t1] for v in views))
            if out is None:
                out = y.new_empty(views[0].shape[:2])
            out[b0:b1, t0:t1] = y
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):  # type: ignore[override]
        views = ctx.saved_tensors
        need = ctx.needs_input_grad[2:]
        grads = [torch.empty(v.shape, dtype=v.dtype, device=v.device) if n else None for v, n in zip(views, need)]
        for b0, b1, t0, t1 in ctx.block_list:
            with torch.enable_grad():
                chunk = [v[b0:b1, t0:t1].detach().requires_grad_(n) for v, n in zip(views, need)]
                y = ctx.kernel(*chunk)
                wrt = [c for c, n in zip(chunk, need) if n]
                got = iter(torch.autograd.grad(y, wrt, grad_out[b0:b1, t0:t1], allow_unused=True))
            for g_full, n in zip(grads, need):
                if n:
                    g = next(got)
                    g_full[b0:b1, t0:t1] = 0.0 if g is None else g
        return (None, None, *grads)


def chunked_rowwise(
    kernel: Callable[..., torch.Tensor], tensors: tuple[torch.Tensor, ...], chunk_size: int,
) -> torch.Tensor:
    """kernel(*blocks) applied block-wise over the positions of tensors (..., T, X_i) -> (..., T).

    kernel maps blocks (b, t, X_i) to (b, t) and must be row-wise (row r's output depends on row r only).
    Differentiable once in every float input; the result dtype is the kernel's (fp32 or wider).
    """
    lead = tensors[0].shape[:-1]
    views = [_as_3d(t) for t in tensors]
    n_lead, n_pos = views[0].shape[:2]
    for v in views[1:]:
        if v.shape[:2] != (n_lead, n_pos):
            raise ValueError(f"leading shapes differ: {tuple(t.shape for t in tensors)}")
    if n_lead * n_pos == 0:
        return kernel(*views).reshape(lead)
    width = max(v.shape[-1] for v in views)
    itemsize = max([4] + [v.element_size() for v in views if v.is_floating_point()])  # fp32-or-wider math
    return _Chunked.apply(kernel, blocks(n_lead, n_pos, chunk_size, width * itemsize), *views).reshape(lead)
