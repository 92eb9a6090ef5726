"""String reversal: ``"reverse abcd:"`` -> ``"dcba"``, verified by exact match of the leading answer.

Strings have a length in ``[min_len, max_len]`` over ``alphabet``. When the space is small enough
to enumerate, examples are uniform over distinct strings; otherwise the length is drawn uniformly
first, then the characters (see ``alignrl.tasks.base``). The canonical problem string used for the
train/test hash is the input string itself.
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


@dataclass(frozen=True, kw_only=True, slots=True)
class ReverseParams(SamplingParams):
    """Knobs of the reversal task (plus ``n``, ``split``, ``seed``, ``test_fraction``)."""

    min_len: int = 3
    """Shortest input string."""
    max_len: int = 6
    """Longest input string."""
    alphabet: str = "abcdefghijklmnopqrstuvwxyz"
    """Distinct letters or digits the strings are made of."""

    def __post_init__(self) -> None:
        SamplingParams.__post_init__(self)  # zero-arg super() fails in slots dataclasses
        check_string_params(self.alphabet, self.min_len, self.max_len)


verify = verify_exact


def to_example(text: str) -> Example:
    """Build the example for input string ``text``."""
    return Example(prompt=f"reverse {text}:", completion=text[::-1], answer=text[::-1])


@register_task("reverse", ReverseParams, verify=verify)
def reverse(p: ReverseParams) -> list[Example]:
    """``min(p.n, split size)`` distinct strings of ``p.split`` as ``Example("reverse abcd:", "dcba")``."""
    problems = sample_problems(
        p,
        space_size=string_space_size(p.alphabet, p.min_len, p.max_len),
        enumerate_all=lambda: enumerate_strings(p.alphabet, p.min_len, p.max_len),
        draw=lambda rng: draw_string(rng, p.alphabet, p.min_len, p.max_len),
    )
    return [to_example(t) for t in problems]
