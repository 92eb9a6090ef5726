"""Log-probabilities of chosen tokens, computed in float32 or wider."""

from __future__ import annotations

import torch


def upcast(x: torch.Tensor) -> torch.Tensor:
    """bf16/fp16 -> fp32; fp32 and fp64 unchanged (all divergence math runs at fp32 or wider)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def selective_log_softmax(logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[..., index] without keeping a (B, T, V) log-prob tensor alive.

    log p(i) = z_i − logsumexp(z).  Args: logits (B, T, V); index (B, T) long. Returns (B, T).
    """
    logits = upcast(logits)
    picked = torch.gather(logits, -1, index.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def token_logprobs(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Causal-LM log π(x_t | x_<t) aligned to ``input_ids``: position 0 gets 0 (no prediction).

    Args: logits (B, T, V) from a forward pass on input_ids (B, T). Returns (B, T).
    """
    logp = selective_log_softmax(logits[:, :-1], input_ids[:, 1:])
    return torch.nn.functional.pad(logp, (1, 0), value=0.0)
