"""Top-k form: any registered divergence from the anchor's top-k log-probs plus one tail bucket.

When only the teacher's (anchor's) top-k log-probs are stored or served (vLLM ``logprobs=k``, offline
teacher logits), both distributions are coarse-grained onto k + 1 buckets: the k teacher tokens and one
"everything else" bucket,
  q̃ = (q(v₁), …, q(v_k), 1 − Σ_i q(v_i)),   p̃ = (p(v₁), …, p(v_k), Σ_{v∉K} p(v)),
and the divergence's dense kernel runs on (p̃, q̃). For an f-divergence D_f(p̃‖q̃) ≤ D_f(p‖q) (data
processing), with equality when k = V, where no tail bucket is added and the result equals the full
form up to summation order.
Refs: pre-training distillation design space (top-k/top-p truncated teacher logits), arXiv:2410.16215
(verify); SKD arXiv:2410.11325 (verify) for top-K teacher interfaces; the tail bucket is the standard
"rest of the vocabulary" completion.
Deviations from the papers: papers that renormalize the top-k teacher probabilities drop the tail mass;
here it is kept as a bucket so the coarse distributions stay normalized. Both tail log-masses are floored
at log(tail_min) (a teacher whose top-k holds all the mass in float precision would give log 0).
"""

from __future__ import annotations

import math

import torch

from alignrl.divergences.base import Divergence, DivergenceParams, chunked_rowwise, log_softmax_t
from alignrl.ops import upcast
from alignrl.registry import DIVERGENCES


def topk_buckets(
    logp: torch.Tensor, topk_logq: torch.Tensor, topk_index: torch.Tensor, *, tail_min: float = 1e-12,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p̃, log q̃) on k + 1 buckets (k buckets when k = V).

    Args: logp (..., V) policy log-probs (normalized over V); topk_logq (..., k) anchor log-probs at
    topk_index (..., k) long, normalized over the full vocabulary; indices distinct within a row.
    Returns: two (..., k+1) tensors (…, k) when k = V); the last bucket is the tail.
    """
    logp_k = logp.gather(-1, topk_index)
    if topk_index.shape[-1] == logp.shape[-1]:
        return logp_k, topk_logq
    floor = math.log(tail_min)
    tail_p = logp.scatter(-1, topk_index, -math.inf).logsumexp(-1)  # exact log Σ_{v∉K} p(v)
    head_q = topk_logq.logsumexp(-1).clamp_max(0.0)
    tail_q = torch.log((-torch.expm1(head_q)).clamp_min(tail_min))  # log(1 − Σ_K q), guarded before the log
    logp_b = torch.cat([logp_k, tail_p.clamp_min(floor).unsqueeze(-1)], dim=-1)
    logq_b = torch.cat([topk_logq, tail_q.unsqueeze(-1)], dim=-1)
    return logp_b, logq_b


def topk_full(
    divergence: Divergence | str,
    logits_p: torch.Tensor,
    topk_logq: torch.Tensor,
    topk_index: torch.Tensor,
    p: DivergenceParams,
    *,
    temperature: float = 1.0,
    tail_min: float = 1e-12,  # floor on both tail masses; 0·log 0 and log 0 guard
) -> torch.Tensor:
    """D(p̃‖q̃) per position, p̃/q̃ the (k+1)-bucket coarse-grainings of softmax(z_p/τ) and the anchor.

    Args: divergence a registered name or entry; logits_p (..., V) policy logits (any float dtype);
    topk_logq (..., k) anchor log-probs (normalized over V, at the same temperature τ) at topk_index
    (..., k) long; p the divergence's Params.
    Returns: (...) fp32 or wider; differentiable in logits_p (and topk_logq); chunked like ``full``.
    """
    entry = DIVERGENCES.get(divergence) if isinstance(divergence, str) else divergence
    if topk_logq.shape != topk_index.shape or topk_logq.shape[:-1] != logits_p.shape[:-1]:
        raise ValueError(
            f"shapes: logits_p {tuple(logits_p.shape)}, topk_logq {tuple(topk_logq.shape)}, "
            f"topk_index {tuple(topk_index.shape)}"
        )

    def kernel(zp: torch.Tensor, lq_k: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        logp_b, logq_b = topk_buckets(log_softmax_t(zp, temperature), upcast(lq_k), idx, tail_min=tail_min)
        return entry.dense(logp_b, logq_b, p)

    return chunked_rowwise(kernel, (logits_p, topk_logq, topk_index), p.chunk_size)
