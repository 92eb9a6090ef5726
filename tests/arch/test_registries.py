"""Every registered component is documented and reachable from a recipe by name."""

import dataclasses

import pytest

import alignrl.advantages  # noqa: F401
import alignrl.anchors  # noqa: F401
import alignrl.divergences  # noqa: F401
import alignrl.merging  # noqa: F401
import alignrl.objectives  # noqa: F401
import alignrl.rewards  # noqa: F401
from alignrl.registry import ALL_REGISTRIES

ENTRIES = [(reg.kind, name, reg.entry(name)) for reg in ALL_REGISTRIES for name in reg.names()]


def test_every_registry_has_entries():
    empty = [reg.kind for reg in ALL_REGISTRIES if not reg.names()]
    assert not empty, f"registries with nothing registered: {empty}"


@pytest.mark.parametrize("kind,name,entry", ENTRIES, ids=[f"{k}:{n}" for k, n, _ in ENTRIES])
def test_entry_is_documented_with_frozen_params(kind, name, entry):
    doc = getattr(entry.fn, "__doc__", None) or ""
    assert len(doc.strip()) > 20, f"{kind} {name!r} has no docstring"
    if entry.params is not None:
        assert dataclasses.is_dataclass(entry.params), f"{kind} {name!r}: params must be a dataclass"
        assert entry.params.__dataclass_params__.frozen, f"{kind} {name!r}: params must be frozen"


def test_duplicate_registration_raises():
    from alignrl.registry import Registry

    reg = Registry("thing")
    reg.register("a")(lambda: None)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(lambda: None)
    with pytest.raises(KeyError, match="Did you mean 'a'"):
        reg.get("aa")


def test_registration_in_a_test_does_not_leak(isolated_registries):
    from alignrl.registry import MERGES

    before = MERGES.names()
    MERGES.register("throwaway_for_test")(lambda tensors, base, p: tensors[0])
    assert "throwaway_for_test" in MERGES
    MERGES.restore({n: MERGES.entry(n) for n in before})
    assert MERGES.names() == before
