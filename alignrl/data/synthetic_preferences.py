"""Synthetic preference pairs from a task with a gold reward, for reward-model tests and overoptimization studies.

``prefs://arithmetic?digits=2&n=4000&split=train&gold=digits&noise=0.25&seed=0``: every task example gives one
pair of distinct candidate answers (the gold answer or a perturbation of it: a few units or tens off, a digit
changed, dropped or added), labelled by the gold reward (``gold``: the task's ``reward`` values, e.g. ``exact``
or ``digits``; ties are redrawn), then each label flipped with probability ``noise`` (Coste et al. use 25%).
The task's own query keys (``digits``, ``ops``, ``n``, ``split``, ``seed``, ...) pick the prompts; ``noise`` and
``gold`` are the pair builder's. Candidates and flips come from ``random.Random(seed)``, so a URI always gives
the same pairs. Only tasks with a perturbation rule (arithmetic) can be used.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from alignrl.data.sources import PreferenceExample
from alignrl.errors import UserError
from alignrl.tasks import TASKS, parse_task_uri

SCHEME = "prefs://"
PAIR_KEYS = ("noise", "gold")
GOLD_SHARE = 0.3  # how often a candidate is the gold answer itself


def _perturb_int(answer: str, rng: random.Random) -> str:
    """A nearby wrong-or-right integer answer: gold (30%), ±1..9, ±10..90, one digit changed, dropped or added."""
    value = int(answer)
    if rng.random() < GOLD_SHARE:
        return answer
    digits = list(str(abs(value)))
    kind = rng.randrange(5)
    if kind == 0:
        value += rng.choice([-1, 1]) * rng.randint(1, 9)
    elif kind == 1:
        value += rng.choice([-1, 1]) * 10 * rng.randint(1, 9)
    elif kind == 2:
        i = rng.randrange(len(digits))
        digits[i] = rng.choice([d for d in "0123456789" if d != digits[i]])
        value = int("".join(digits)) * (-1 if value < 0 else 1)
    elif kind == 3 and len(digits) > 1:
        del digits[rng.randrange(len(digits))]
        value = int("".join(digits)) * (-1 if value < 0 else 1)
    else:
        digits.insert(rng.randrange(len(digits) + 1), rng.choice("0123456789"))
        value = int("".join(digits)) * (-1 if value < 0 else 1)
    return str(value)


PERTURBERS: dict[str, Callable[[str, random.Random], str]] = {"arithmetic": _perturb_int}


def parse_prefs_uri(uri: str, key: str = "data.train") -> tuple[str, str, float]:
    """``(task name, task URI with reward=gold, noise)`` of a ``prefs://`` URI; problems are ``UserError``s."""
    body = uri[len(SCHEME):]
    name, _, query = body.partition("?")
    pair_kw, task_parts = {}, []
    for part in filter(None, query.split("&")):
        k, _, v = part.partition("=")
        (pair_kw.__setitem__(k, v) if k in PAIR_KEYS else task_parts.append(part))
    if name not in PERTURBERS:
        known = ", ".join(sorted(PERTURBERS))
        raise UserError(f"{key}: {uri!r}: no synthetic preferences for task {name!r} (available: {known})")
    try:
        noise = float(pair_kw.get("noise", "0"))
    except ValueError:
        raise UserError(f"{key}: {uri!r}: noise={pair_kw['noise']!r} is not a number") from None
    if not 0.0 <= noise < 0.5:
        raise UserError(f"{key}: {uri!r}: noise must be in [0, 0.5) (the share of flipped labels), got {noise}")
    gold = pair_kw.get("gold", "exact")
    task_uri = f"tasks://{name}?{'&'.join(task_parts + [f'reward={gold}'])}"
    try:
        parse_task_uri(task_uri)
    except UserError as err:
        raise UserError(f"{key}: {err}") from None
    return name, task_uri, noise


def synthetic_preferences(uri: str, key: str = "data.train") -> list[PreferenceExample]:
    """The pairs a ``prefs://`` URI names (module docstring); every problem is a ``UserError`` naming ``key``."""
    from alignrl.tasks.base import reward_for

    name, task_uri, noise = parse_prefs_uri(uri, key)
    _, params = parse_task_uri(task_uri)
    rng = random.Random(params.seed * 7_919 + 17)
    perturb = PERTURBERS[name]
    pairs = []
    for ex in TASKS.get(name)(params):
        for _ in range(50):  # redraw until the gold reward separates the two candidates
            a, b = perturb(ex.answer, rng), perturb(ex.answer, rng)
            ra, rb = reward_for(task_uri, [a, b], [ex.answer, ex.answer])
            if ra != rb:
                break
        else:
            continue
        chosen, rejected = (a, b) if ra > rb else (b, a)
        if rng.random() < noise:
            chosen, rejected = rejected, chosen
        pairs.append(PreferenceExample(prompt=ex.prompt, chosen=chosen, rejected=rejected))
    return pairs
