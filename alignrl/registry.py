"""One strict registry class and the registry instances the recipes name things through.

A registry maps a string key (what a recipe writes) to a callable plus, optionally, the frozen
dataclass of its parameters. Registering a name twice raises; asking for an unknown name raises
``KeyError`` listing the known ones and the nearest match.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T", bound=Callable[..., Any])


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    fn: T
    params: type | None  # frozen dataclass of the entry's knobs, or None if it has none


class Registry(Generic[T]):
    """A name -> callable table with decorator registration; duplicates and unknown names raise."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, params: type | None = None) -> Callable[[T], T]:
        def decorator(fn: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = Entry(name, fn, params)
            return fn

        return decorator

    def entry(self, name: str) -> Entry[T]:
        if name not in self._entries:
            raise KeyError(self.unknown_message(name))
        return self._entries[name]

    def get(self, name: str) -> T:
        return self.entry(name).fn

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(str(name), self.names(), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return f"unknown {self.kind} {name!r}; known: {', '.join(self.names()) or '(none)'}.{hint}"

    def snapshot(self) -> dict[str, Entry[T]]:
        return dict(self._entries)

    def restore(self, snapshot: dict[str, Entry[T]]) -> None:
        self._entries = dict(snapshot)


DIVERGENCES: Registry = Registry("divergence")
ADVANTAGES: Registry = Registry("advantage estimator")
POLICY_LOSSES: Registry = Registry("policy loss")
PREFERENCE_LOSSES: Registry = Registry("preference loss")
DISTILL_LOSSES: Registry = Registry("distillation loss")
TRAIN_LOSSES: Registry = Registry("training objective")
ANCHORS: Registry = Registry("anchor")
MERGES: Registry = Registry("merge method")
REWARD_AGGREGATIONS: Registry = Registry("reward aggregation")
ALL_REGISTRIES = (
    DIVERGENCES, ADVANTAGES, POLICY_LOSSES, PREFERENCE_LOSSES, DISTILL_LOSSES, TRAIN_LOSSES, ANCHORS, MERGES,
    REWARD_AGGREGATIONS,
)


@dataclass(frozen=True, slots=True)
class Component:
    """A registered component chosen by name, with its typed parameters (built from a recipe by schema.py)."""

    name: str
    params: Any  # the entry's frozen Params dataclass instance, or None
