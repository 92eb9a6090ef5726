"""The interface every generation engine implements.

An engine owns one model copy and turns prompts into sampled completions with the per-token
log-probabilities of the sampled tokens (raw model log-probs, before temperature scaling is undone:
see each engine's docstring). Loops and actors talk to this interface only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, kw_only=True, slots=True)
class SamplingConfig:
    n: int = 1                   # completions per prompt
    temperature: float = 1.0     # 0.0 means greedy
    top_p: float = 1.0
    max_new_tokens: int = 16
    seed: int = 0
    logprobs: bool = False       # return the sampled tokens' log-probs
    teacher_in_loop: bool = False  # speculative KD: an engine with a teacher lets it replace proposals


@dataclass(frozen=True, kw_only=True, slots=True)
class Completion:
    text: str                                         # decoded, special tokens skipped
    token_ids: tuple[int, ...]                        # generated ids, eos included if produced
    logprobs: tuple[float, ...] | None = None         # log π(token) per generated id
    finished: bool = True                             # False when cut by max_new_tokens
    extra: dict = field(default_factory=dict)


class GenerationEngine(Protocol):
    def generate(self, prompts: list[str], sampling: SamplingConfig) -> list[list[Completion]]:
        """One list of ``sampling.n`` completions per prompt, in prompt order."""

    def load_weights(self, named_tensors: list[tuple[str, "object"]]) -> None:
        """Replace the model's weights in place (HF parameter names)."""

    def close(self) -> None:
        """Free the engine's memory and processes."""
