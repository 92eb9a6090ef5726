"""Build frozen dataclasses from plain dicts, strictly.

Every unknown key, wrong type or bad value raises ``UserError`` naming the dotted key, the file and
line it came from, what was expected, and the nearest valid key. A field whose metadata carries a
``registry`` holds a registered component: ``{name: ..., **params}`` becomes ``Component(name,
params)`` with ``params`` built into that entry's own frozen dataclass.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from typing import Any, Literal, Union

from alignrl.errors import UserError
from alignrl.registry import Component  # noqa: F401  (re-exported: recipes' components are built here)
from alignrl.yaml_loader import Origins


def _where(path: str, origins: Origins) -> str:
    probe = path
    while probe:
        if probe in origins:
            return f"{origins[probe]}: "
        if probe.endswith("]"):  # a list item without an origin of its own: its list's line
            probe = probe[: probe.rindex("[")]
            continue
        probe = probe.rsplit(".", 1)[0] if "." in probe else ""
    return f"{origins['']}: " if origins.get("") else ""  # the recipe file itself


def fail(path: str, origins: Origins, message: str) -> typing.NoReturn:
    """Raise a UserError that starts with the key's origin (file:line) and dotted path."""
    raise UserError(f"{_where(path, origins)}{path}: {message}")


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping (section)"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, str(tp))


def coerce(value: Any, tp: Any, path: str, origins: Origins) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert it (int -> float, list -> tuple)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in typing.get_args(tp):
            return None  # null means "none" for an optional section, not "the section's defaults"
        errors: list[tuple[Any, UserError]] = []
        for option in typing.get_args(tp):
            try:
                return coerce(value, option, path, origins)
            except UserError as err:
                errors.append((option, err))
        for option, err in errors:  # a mapping/list meant for the section/list option: its own error says more
            if (isinstance(value, dict) and dataclasses.is_dataclass(option)) or (
                    isinstance(value, list) and typing.get_origin(option) is tuple):
                raise err
        fail(path, origins, f"expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            fail(path, origins, f"expected {_type_name(tp)}, got {value!r}.{hint}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            fail(path, origins, f"expected {_type_name(tp)}, got {value!r}")
        item = typing.get_args(tp)[0]
        return tuple(coerce(v, item, f"{path}[{i}]", origins) for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        return build(tp, value, path, origins)
    if tp is type(None):
        if value is not None:
            fail(path, origins, f"expected null, got {value!r}")
        return None
    if tp is bool:
        if not isinstance(value, bool):
            fail(path, origins, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            fail(path, origins, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail(path, origins, f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            fail(path, origins, f"expected a string, got {value!r}")
        return value
    raise TypeError(f"schema: unsupported annotation {tp!r} at {path}")


def _unknown_key(key: str, known: list[str], path: str, origins: Origins) -> typing.NoReturn:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    fail(path, origins, f"unknown key.{hint} Valid keys here: {', '.join(sorted(known))}")


def build(cls: type, data: Any, path: str, origins: Origins) -> Any:
    """Build dataclass ``cls`` from mapping ``data`` found at dotted ``path``; strict about keys and types."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        fail(path or "recipe", origins, f"expected a mapping (section), got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        sub = f"{path}.{key}" if path else key
        if key not in fields:
            _unknown_key(key, list(fields), sub, origins)
        registry = fields[key].metadata.get("registry")
        if registry is not None:
            kwargs[key] = build_component(registry, value, sub, origins)
        else:
            kwargs[key] = coerce(value, hints[key], sub, origins)
    missing = [
        name for name, f in fields.items()
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        where = f"{path}." if path else ""
        fail(path or missing[0], origins, f"missing required key(s): {', '.join(where + m for m in missing)}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:
        # A check in __post_init__ whose message starts with a field's name is reported at that field.
        first = re.match(r"\w+", str(err))
        field_name = first.group(0) if first and first.group(0) in kwargs else None
        at = (f"{path}.{field_name}" if path else field_name) if field_name else path or "recipe"
        fail(at, origins, str(err))


def build_component(registry: Any, data: Any, path: str, origins: Origins) -> Component:
    """``{name: x, **params}`` (or just ``x``) -> Component, params built from the entry's dataclass."""
    if isinstance(data, str):
        data = {"name": data}
    if not isinstance(data, dict) or "name" not in data:
        fail(path, origins, f"expected a mapping with a 'name' (one of: {', '.join(registry.names())}), got {data!r}")
    name = data["name"]
    if name not in registry:
        fail(f"{path}.name", origins, registry.unknown_message(name))
    params_cls = registry.entry(name).params
    rest = {k: v for k, v in data.items() if k != "name"}
    if params_cls is None:
        if rest:
            _unknown_key(next(iter(rest)), ["name"], f"{path}.{next(iter(rest))}", origins)
        return Component(name, None)
    return Component(name, build(params_cls, rest, path, origins))


def to_plain(obj: Any) -> Any:
    """Dataclass tree -> plain dicts/lists (Components flattened to ``{name, **params}``) for YAML dumps."""
    if isinstance(obj, Component):
        params = to_plain(obj.params) if obj.params is not None else {}
        return {"name": obj.name, **params}
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj
