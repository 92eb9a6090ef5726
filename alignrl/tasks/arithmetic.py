"""Integer arithmetic: ``"12+34="`` -> ``"46"``, verified by parsing the first integer of the completion.

Operands are uniform in ``[0, 10**digits - 1]``; the operator is uniform over ``ops`` (a subset
of ``+-*``). Subtraction can give a negative answer (``"3-15="`` -> ``"-12"``). The canonical
problem string used for the train/test hash is the prompt without ``=`` (``"12+34"``).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import dataclass

from alignrl.errors import UserError
from alignrl.tasks.base import Example, SamplingParams, register_task, sample_problems

OPERATORS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
_LEADING_INT = re.compile(r"[+-]?[0-9]+")
_PROBLEM = re.compile(r"([0-9]+)([-+*])([0-9]+)")


@dataclass(frozen=True, kw_only=True, slots=True)
class ArithmeticParams(SamplingParams):
    """Knobs of the arithmetic task (plus ``n``, ``split``, ``seed``, ``test_fraction``)."""

    digits: int = 2
    """Operands have at most this many digits: uniform in ``[0, 10**digits - 1]``."""
    ops: str = "+"
    """Operators to draw from, any of ``+-*``; order and repeats do not matter."""
    reward: str = "exact"
    """RL reward: ``exact`` (the verifier, 1/0) or ``digits`` (graded: ``digit_credit``). Accuracy is always exact."""

    def __post_init__(self) -> None:
        SamplingParams.__post_init__(self)  # zero-arg super() fails in slots dataclasses
        if not 1 <= self.digits <= 18:
            raise UserError(f"digits must be in [1, 18], got {self.digits}")
        bad = set(self.ops) - set(OPERATORS)
        if not self.ops or bad:
            raise UserError(f"ops must be a non-empty subset of {''.join(OPERATORS)!r}, got {self.ops!r}")
        if self.reward not in REWARDS:
            raise UserError(f"reward must be one of {', '.join(REWARDS)}, got {self.reward!r}")


def leading_int(completion: str) -> int | None:
    """The first integer of ``completion``, or None.

    After stripping leading whitespace the completion must start with an optionally signed run
    of ASCII digits; parsing stops at the first other character (``"46\\n12+"`` -> 46,
    ``"46</s>"`` -> 46, ``"4 6"`` -> 4). A decimal part (``"46.5"``) or no digits at all gives None.
    """
    text = completion.lstrip()
    match = _LEADING_INT.match(text)
    if match is None:
        return None
    rest = text[match.end():]
    if rest[:1] == "." and rest[1:2].isdigit():
        return None
    return int(match.group())


def verify(completion: str, answer: str) -> float:
    """1.0 if the first integer of ``completion`` (``leading_int``) equals ``answer``, else 0.0."""
    value = leading_int(completion)
    return 1.0 if value is not None and value == int(answer) else 0.0


def digit_credit(completion: str, answer: str) -> float:
    """Graded reward in [0, 1]: the share of digit places, aligned from the units, where the completion's
    first integer agrees with the answer, over the longer of the two digit strings.

    r = |{k : p_k = a_k}| / max(len(p), len(a)) with p, a the decimal digits of |pred|, |answer|, and 0 when
    nothing parses or the signs differ; r = 1 exactly when ``verify`` gives 1. E.g. answer 46: "46" -> 1,
    "45" -> 0.5, "146" -> 2/3, "7" -> 0. A dense score for showing reward-KL trade-offs (WARP) where 1/0
    accuracy saturates.
    """
    value = leading_int(completion)
    if value is None or (value < 0) != (int(answer) < 0):
        return 0.0
    p, a = str(abs(value))[::-1], str(abs(int(answer)))[::-1]
    return sum(x == y for x, y in zip(p, a)) / max(len(p), len(a))


def grade(completion: str, answer: str, params: ArithmeticParams) -> float:
    """The reward ``params.reward`` selects: ``verify`` (exact) or ``digit_credit`` (digits)."""
    return REWARDS[params.reward](completion, answer)


REWARDS = {"exact": verify, "digits": digit_credit}


def to_example(canonical: str) -> Example:
    """Build the example for a canonical problem such as ``"12+34"``."""
    a, op, b = _PROBLEM.fullmatch(canonical).groups()
    answer = str(OPERATORS[op](int(a), int(b)))
    return Example(prompt=f"{canonical}=", completion=answer, answer=answer)


def _enumerate(ops: str, digits: int) -> Iterator[str]:
    """Every problem once: for each operator, every operand pair."""
    hi = 10**digits
    for op in ops:
        for a in range(hi):
            for b in range(hi):
                yield f"{a}{op}{b}"


def _draw(rng: random.Random, ops: str, digits: int) -> str:
    """One problem uniformly from the space."""
    hi = 10**digits - 1
    op = rng.choice(ops)
    return f"{rng.randint(0, hi)}{op}{rng.randint(0, hi)}"


@register_task("arithmetic", ArithmeticParams, verify=verify, grade=grade)
def arithmetic(p: ArithmeticParams) -> list[Example]:
    """``min(p.n, split size)`` distinct problems of ``p.split`` as ``Example("12+34=", "46", "46")``."""
    ops = "".join(sorted(set(p.ops)))  # "+-" and "-+" name the same task
    problems = sample_problems(
        p,
        space_size=len(ops) * 10 ** (2 * p.digits),
        enumerate_all=lambda: _enumerate(ops, p.digits),
        draw=lambda rng: _draw(rng, ops, p.digits),
    )
    return [to_example(c) for c in problems]
