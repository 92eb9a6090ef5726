"""Shared checks and helpers for the per-tensor merge operators (pure set).

Every ``MergeOp(tensors, base, p)`` validates its inputs with ``check_inputs`` (same shape, dtype and
device; floating point), computes in ``work_dtype`` (float32, or float64 when the inputs are float64)
and casts the result back with ``.to(dtype)``, so bf16 in gives bf16 out on the same device.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; every other floating dtype (bf16, fp16, fp32) computes in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def check_inputs(
    tensors: Sequence[torch.Tensor],
    base: torch.Tensor | None,
    *,
    op: str,
    min_models: int = 1,
    max_models: int | None = None,
    needs_base: bool = False,
) -> None:
    """Raise ``ValueError`` unless the inputs fit ``op``: counts, base presence, one shape/dtype/device."""
    n = len(tensors)
    if n < min_models or (max_models is not None and n > max_models):
        want = f"{min_models}" if max_models == min_models else f"{min_models}..{max_models or 'any'}"
        raise ValueError(f"{op}: expected {want} model tensors, got {n}")
    if needs_base and base is None:
        raise ValueError(f"{op}: needs a base tensor (task vectors are taken against it)")
    ref = tensors[0]
    if not ref.is_floating_point():
        raise ValueError(f"{op}: merges floating-point tensors only, got {ref.dtype}")
    others = list(tensors[1:]) + ([base] if base is not None else [])
    for t in others:
        if t.shape != ref.shape or t.dtype != ref.dtype or t.device != ref.device:
            raise ValueError(
                f"{op}: all inputs need one shape, dtype and device; got {tuple(ref.shape)} {ref.dtype} "
                f"{ref.device} and {tuple(t.shape)} {t.dtype} {t.device}"
            )


def resolve_weights(weights: Sequence[float] | None, n: int, *, op: str) -> list[float]:
    """Per-model weights as a list of n floats; ``None`` means 1.0 each."""
    if weights is None:
        return [1.0] * n
    if len(weights) != n:
        raise ValueError(f"{op}: {len(weights)} weights for {n} models")
    return [float(w) for w in weights]


def task_vectors(tensors: Sequence[torch.Tensor], base: torch.Tensor) -> torch.Tensor:
    """δ_m = θ_m − θ_base stacked in the work dtype. (M, *shape)."""
    dt = work_dtype(base.dtype)
    return torch.stack([t.to(dt) for t in tensors]) - base.to(dt)


def check_state_dicts(dicts: Sequence[Mapping[str, torch.Tensor]], names: Sequence[str]) -> None:
    """Raise ``ValueError`` unless all dicts have the same keys and, per key, the same shape.

    ``names`` labels each dict in the message (e.g. ``["model 0", "model 1", "base"]``).
    """
    keys = set(dicts[0])
    for d, name in zip(dicts[1:], names[1:]):
        if set(d) != keys:
            missing, extra = sorted(keys - set(d)), sorted(set(d) - keys)
            raise ValueError(f"{name} keys differ from {names[0]}: missing {missing[:5]}, extra {extra[:5]}")
        for k in keys:
            if d[k].shape != dicts[0][k].shape:
                raise ValueError(
                    f"{k!r}: shape {tuple(d[k].shape)} in {name} vs {tuple(dicts[0][k].shape)} in {names[0]}"
                )
