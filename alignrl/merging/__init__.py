"""Weight-space merge operators on ``{name: Tensor}`` state dicts (pure set).

Every operator is registered in ``MERGES`` with one signature (STYLE "Registries"):

    MergeOp(tensors: list[Tensor], base: Tensor | None, p: Params) -> Tensor

``tensors`` are the M models' values of one parameter (same shape, dtype and device), ``base`` the
base/init model's value or None; the op computes in float32 (float64 for float64 inputs) and returns
the input dtype on the input device. ``merge_state_dicts`` applies an op key by key. Importing this
package registers the operators below (explicit list: the only side-effect imports).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from alignrl.merging import dare, linear, liti, model_stock, slerp, task_arithmetic, ties  # noqa: F401
from alignrl.merging.common import check_state_dicts
from alignrl.registry import MERGES


def key_seed(seed: int, key: str) -> int:
    """A 63-bit seed derived from (seed, parameter name), so same-shaped tensors get different masks."""
    digest = hashlib.blake2b(f"{seed}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@torch.no_grad()
def merge_state_dicts(
    method: str,
    state_dicts: Sequence[Mapping[str, torch.Tensor]],
    base: Mapping[str, torch.Tensor] | None = None,
    params: Any = None,
) -> dict[str, torch.Tensor]:
    """θ[k] = MergeOp([sd_1[k], …, sd_M[k]], base[k], p) for every key k; a new dict, inputs untouched.

    Args: method a ``MERGES`` name; state_dicts M ≥ 1 dicts with identical keys and per-key shapes;
        base the base/init dict (same keys and shapes) or None; params the method's Params instance
        (None = its defaults). Non-floating tensors (integer buffers) must be equal in every input and
        are copied. A Params with a ``seed`` field (DARE) gets ``key_seed(seed, k)`` for key k.
    Returns: {k: merged tensor} in the key order of ``state_dicts[0]``, each in its input dtype/device.
    Raises: KeyError for an unknown method; TypeError for params of the wrong class; ValueError for
        mismatched keys, shapes or integer buffers.
    """
    entry = MERGES.entry(method)
    if params is None:
        params = entry.params() if entry.params is not None else None
    elif entry.params is not None and not isinstance(params, entry.params):
        raise TypeError(f"merge {method!r} takes {entry.params.__name__}, got {type(params).__name__}")
    if not state_dicts:
        raise ValueError(f"merge {method!r}: no state dicts given")
    dicts = list(state_dicts) + ([base] if base is not None else [])
    names = [f"state_dicts[{i}]" for i in range(len(state_dicts))] + (["base"] if base is not None else [])
    check_state_dicts(dicts, names)
    has_seed = params is not None and any(f.name == "seed" for f in dataclasses.fields(params))
    out: dict[str, torch.Tensor] = {}
    for k, first in state_dicts[0].items():
        values = [sd[k] for sd in state_dicts]
        if not first.is_floating_point():
            if not all(torch.equal(first, d[k]) for d in dicts[1:]):
                raise ValueError(f"{k!r}: non-floating tensors differ between inputs; cannot merge them")
            out[k] = first.clone()
            continue
        p_k = dataclasses.replace(params, seed=key_seed(params.seed, k)) if has_seed else params
        out[k] = entry.fn(values, base[k] if base is not None else None, p_k)
    return out


__all__ = ["key_seed", "merge_state_dicts"]
