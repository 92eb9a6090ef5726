"""Shared tensor ops: masked reductions, loss aggregation, log-softmax gathers (pure set)."""

from alignrl.ops.logprobs import selective_log_softmax, token_logprobs, upcast
from alignrl.ops.reductions import AGGREGATION_MODES, aggregate, masked_mean, masked_sum

__all__ = [
    "AGGREGATION_MODES", "aggregate", "masked_mean", "masked_sum", "selective_log_softmax", "token_logprobs", "upcast",
]
