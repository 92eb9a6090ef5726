"""Digit sorting: ``"sort 3141:"`` -> ``"1134"``, verified by exact match of the leading answer.

Inputs are digit strings with a length in ``[min_len, max_len]``; the answer is the same digits in
ascending order. Sampling follows ``alignrl.tasks.reverse`` (uniform over distinct strings when
the space is enumerated, else length first). The canonical problem string is the input string.
"""

from __future__ import annotations

from dataclasses import dataclass

from alignrl.tasks.base import (
    Example,
    SamplingParams,
    check_string_params,
    draw_string,
    enumerate_strings,
    register_task,
    sample_problems,
    string_space_size,
    verify_exact,
)

DIGITS = "0123456789"


@dataclass(frozen=True, kw_only=True, slots=True)
class SortParams(SamplingParams):
    """Knobs of the sorting task (plus ``n``, ``split``, ``seed``, ``test_fraction``)."""

    min_len: int = 3
    """Shortest input string."""
    max_len: int = 6
    """Longest input string."""

    def __post_init__(self) -> None:
        SamplingParams.__post_init__(self)  # zero-arg super() fails in slots dataclasses
        check_string_params(DIGITS, self.min_len, self.max_len)


verify = verify_exact


def to_example(text: str) -> Example:
    """Build the example for digit string ``text``."""
    answer = "".join(sorted(text))
    return Example(prompt=f"sort {text}:", completion=answer, answer=answer)


@register_task("sort", SortParams, verify=verify)
def sort(p: SortParams) -> list[Example]:
    """``min(p.n, split size)`` distinct digit strings of ``p.split`` as ``Example("sort 3141:", "1134")``."""
    problems = sample_problems(
        p,
        space_size=string_space_size(DIGITS, p.min_len, p.max_len),
        enumerate_all=lambda: enumerate_strings(DIGITS, p.min_len, p.max_len),
        draw=lambda rng: draw_string(rng, DIGITS, p.min_len, p.max_len),
    )
    return [to_example(t) for t in problems]
