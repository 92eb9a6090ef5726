"""Synthetic tasks with verifiable answers: the task registry, examples, splits, URIs and rewards.

A task turns a frozen params dataclass into a list of ``Example``s and owns a verifier
``verify(completion, answer) -> 1.0 | 0.0`` (accuracy). A task may also own a graded reward
``grade(completion, answer, params) -> [0, 1]`` that its params select (e.g. ``reward=digits``): RL
rewards come from ``reward_for(URI, ...)``, which uses it; accuracy always comes from ``verify``.
Recipes name a task by URI::

    tasks://arithmetic?digits=2&ops=+-&n=20000&split=train&seed=0

Splits: every possible problem is assigned to train or test by a stable hash of its canonical
string (blake2b, independent of ``n`` and ``seed``), so the two splits never share a problem.
Sampling: when the problem space has at most ``ENUMERATE_LIMIT`` problems it is enumerated and
``n`` distinct problems are drawn from the split with ``random.Random(seed)``; if the split holds
fewer than ``n`` problems, all of them are returned (shuffled), i.e. ``n`` is capped, never padded
with repeats. Larger spaces are sampled with the task's own draw and filtered to the split,
again without repeats.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import random
import re
import typing
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import unquote

from alignrl.errors import UserError
from alignrl.registry import Registry

TASKS: Registry = Registry("task")
SCHEME = "tasks://"
ENUMERATE_LIMIT = 1 << 18  # spaces up to this size are listed in full (< 1 s); larger ones are sampled
SPLITS = ("train", "test")


@dataclass(frozen=True, slots=True)
class Example:
    """One prompt with its gold completion (SFT target) and canonical answer (for the verifier)."""

    prompt: str
    """Raw prompt text, e.g. ``"12+34="``; for conversational data, a plain-text fallback."""
    completion: str
    """Gold completion without any EOS text, e.g. ``"46"``; loops append the tokenizer's EOS."""
    answer: str | None = None
    """Canonical answer passed to ``verify``; defaults to ``completion``."""
    prompt_messages: tuple[dict[str, Any], ...] | None = None
    """Conversational prompt as ``{"role", "content"}`` dicts (apply a chat template), else None."""

    def __post_init__(self) -> None:
        if self.answer is None:
            object.__setattr__(self, "answer", self.completion)


@dataclass(frozen=True, kw_only=True, slots=True)
class SamplingParams:
    """Fields every task shares: how many examples, which split, which seed."""

    n: int = 1000
    """Number of distinct examples; capped at the split's size when the split is smaller."""
    split: str = "train"
    """``train`` or ``test``; the two never share a problem."""
    seed: int = 0
    """Seed of ``random.Random`` that picks the examples; the split itself does not depend on it."""
    test_fraction: float = 0.1
    """Fraction of all problems hashed into the test split (the same for every seed and n)."""

    def __post_init__(self) -> None:
        if self.n < 1:
            raise UserError(f"n must be >= 1, got {self.n}")
        if self.split not in SPLITS:
            raise UserError(f"split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        if not 0.0 < self.test_fraction < 1.0:
            raise UserError(f"test_fraction must be in (0, 1), got {self.test_fraction}")


@dataclass(frozen=True)
class Task:
    """A registered task: its params class, its example generator, its verifier and optional graded reward."""

    name: str
    params: type
    generate: Callable[[Any], list[Example]]
    verify: Callable[[str, str], float]
    grade: Callable[[str, str, Any], float] | None = None

    def __call__(self, p: Any) -> list[Example]:
        """Generate the examples for params ``p``."""
        return self.generate(p)


def register_task(name: str, params: type, verify: Callable[[str, str], float],
                  grade: Callable[[str, str, Any], float] | None = None) -> Callable:
    """Decorator: register a generator ``fn(params) -> list[Example]`` as task ``name``; ``grade`` is the
    optional graded reward ``(completion, answer, params) -> [0, 1]`` (1 exactly when ``verify`` gives 1)."""

    def decorator(generate: Callable[[Any], list[Example]]) -> Callable[[Any], list[Example]]:
        TASKS.register(name, params=params)(Task(name, params, generate, verify, grade))
        return generate

    return decorator


# --- splits and sampling ------------------------------------------------------------------------


def split_of(canonical: str, test_fraction: float) -> str:
    """``"test"`` for the ``test_fraction`` of canonical problem strings whose hash is lowest."""
    digest = hashlib.blake2b(canonical.encode("utf-8"), digest_size=8).digest()
    return "test" if int.from_bytes(digest, "big") < test_fraction * 2**64 else "train"


def sample_problems(
    p: SamplingParams,
    *,
    space_size: int,
    enumerate_all: Callable[[], Iterable[str]],
    draw: Callable[[random.Random], str],
) -> list[str]:
    """Pick ``min(n, split size)`` distinct canonical problems of ``p.split``, deterministic in ``p.seed``.

    Args:
        space_size: number of distinct problems in the whole space (both splits).
        enumerate_all: lists every problem once, in a fixed order.
        draw: samples one problem from the space with the given rng.
    """
    rng = random.Random(p.seed)
    if space_size <= ENUMERATE_LIMIT:
        pool = [c for c in enumerate_all() if split_of(c, p.test_fraction) == p.split]
        if p.n >= len(pool):
            rng.shuffle(pool)
            return pool
        return rng.sample(pool, p.n)
    expected = space_size * (p.test_fraction if p.split == "test" else 1.0 - p.test_fraction)
    if 2 * p.n > expected:
        raise UserError(f"n={p.n} is more than half of the ~{int(expected)} problems in the {p.split} split; lower n")
    picked: dict[str, None] = {}  # insertion-ordered set
    while len(picked) < p.n:
        c = draw(rng)
        if c not in picked and split_of(c, p.test_fraction) == p.split:
            picked[c] = None
    return list(picked)


# --- string-valued problems (shared by reverse and sort) ----------------------------------------


def string_space_size(alphabet: str, min_len: int, max_len: int) -> int:
    """Number of strings over ``alphabet`` with length in ``[min_len, max_len]``."""
    return sum(len(alphabet) ** k for k in range(min_len, max_len + 1))


def enumerate_strings(alphabet: str, min_len: int, max_len: int) -> Iterator[str]:
    """Every string over ``alphabet`` with length in ``[min_len, max_len]``, shortest first."""
    for k in range(min_len, max_len + 1):
        for chars in itertools.product(alphabet, repeat=k):
            yield "".join(chars)


def draw_string(rng: random.Random, alphabet: str, min_len: int, max_len: int) -> str:
    """A string whose length is uniform in ``[min_len, max_len]``, then characters uniform."""
    k = rng.randint(min_len, max_len)
    return "".join(rng.choice(alphabet) for _ in range(k))


def check_string_params(alphabet: str, min_len: int, max_len: int) -> None:
    """Raise ``UserError`` unless ``1 <= min_len <= max_len`` and the alphabet is distinct alphanumerics."""
    if not 1 <= min_len <= max_len:
        raise UserError(f"need 1 <= min_len <= max_len, got min_len={min_len}, max_len={max_len}")
    if not alphabet or not alphabet.isalnum() or len(set(alphabet)) != len(alphabet):
        raise UserError(f"alphabet must be distinct letters/digits, got {alphabet!r}")


def verify_exact(completion: str, answer: str) -> float:
    """1.0 if ``completion`` (leading whitespace stripped) starts with ``answer`` and the answer ends there.

    "Ends there" means the next character, if any, is not a letter or digit: ``"dcba\\n..."`` and
    ``"dcba</s>"`` pass, ``"dcbaa"`` and ``""`` fail.
    """
    text = completion.lstrip()
    if not answer or not text.startswith(answer):
        return 0.0
    rest = text[len(answer):]
    return 0.0 if rest[:1].isalnum() else 1.0


# --- URIs and rewards ---------------------------------------------------------------------------


def parse_task_uri(uri: str) -> tuple[str, Any]:
    """Parse ``tasks://NAME?key=value&...`` into ``(NAME, params)``; every problem is a ``UserError``.

    Values are percent-decoded but ``+`` stays a literal plus (``ops=+-``), unlike form encoding.
    Keys must be fields of the task's params dataclass; values are coerced to the field's type.
    """
    if not uri.startswith(SCHEME):
        raise UserError(f"{uri!r}: a task URI starts with {SCHEME}, e.g. {SCHEME}arithmetic?digits=2")
    name, _, query = uri[len(SCHEME):].partition("?")
    if name not in TASKS:
        raise UserError(f"{uri!r}: {TASKS.unknown_message(name)}")
    params_cls = TASKS.entry(name).params
    kwargs = _query_kwargs(uri, query, params_cls)
    try:
        return name, params_cls(**kwargs)
    except UserError as err:
        raise UserError(f"{uri!r}: {err}") from None


def _query_kwargs(uri: str, query: str, params_cls: type) -> dict[str, Any]:
    """Split, check and coerce the ``key=value`` pairs of a task URI's query."""
    types = typing.get_type_hints(params_cls)
    shared = {f.name for f in fields(SamplingParams)}
    valid = sorted((f.name for f in fields(params_cls)), key=lambda k: k in shared)  # task's own first
    kwargs: dict[str, Any] = {}
    for part in filter(None, query.split("&")):
        key, eq, raw = part.partition("=")
        key = unquote(key)
        if not eq:
            raise UserError(f"{uri!r}: query part {part!r} is not key=value")
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UserError(f"{uri!r}: unknown key {key!r}; valid keys: {', '.join(valid)}.{hint}")
        if key in kwargs:
            raise UserError(f"{uri!r}: key {key!r} given twice")
        kwargs[key] = _coerce(uri, key, unquote(raw), types[key])
    return kwargs


def _coerce(uri: str, key: str, raw: str, typ: type) -> Any:
    """Convert a query value to ``typ`` (int, float or str); a bad value names the key and type."""
    if typ is str:
        return raw
    if typ is int:
        if re.fullmatch(r"[+-]?[0-9]+", raw):
            return int(raw)
    elif typ is float:
        try:
            return float(raw)
        except ValueError:
            pass
    else:
        raise TypeError(f"task param {key!r} has unsupported type {typ!r}")
    raise UserError(f"{uri!r}: {key}={raw!r}: expected {typ.__name__}")


def examples_from_uri(uri: str) -> list[Example]:
    """Generate the examples a task URI names."""
    name, params = parse_task_uri(uri)
    return TASKS.get(name)(params)


def reward_for(task_uri_or_name: str, completions: Sequence[str], answers: Sequence[str]) -> list[float]:
    """Score each completion against its answer.

    Given a task URI whose task has a graded reward, that reward with the URI's params (e.g.
    ``tasks://arithmetic?reward=digits``); otherwise, and for a bare task name, the verifier: 1.0 correct,
    0.0 not (so a bare name always gives accuracy).
    """
    params = None
    if task_uri_or_name.startswith(SCHEME):
        name, params = parse_task_uri(task_uri_or_name)
    elif task_uri_or_name in TASKS:
        name = task_uri_or_name
    else:
        raise UserError(TASKS.unknown_message(task_uri_or_name))
    if len(completions) != len(answers):
        raise ValueError(f"{len(completions)} completions but {len(answers)} answers")
    task = TASKS.get(name)
    if params is not None and task.grade is not None:
        return [task.grade(c, a, params) for c, a in zip(completions, answers)]
    return [task.verify(c, a) for c, a in zip(completions, answers)]
