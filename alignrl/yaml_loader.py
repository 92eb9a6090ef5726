"""Strict YAML reading that remembers where each key came from (file and line).

``yaml.safe_load`` alone loses positions, so recipes are composed to nodes first and turned into
plain dicts while recording ``dotted.key -> "file:line"``. ``extends:`` chains are merged here too.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from alignrl.errors import UserError

Origins = dict[str, str]  # dotted key -> "recipe.yaml:12"


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads exponent floats without a dot (``3e-4``, ``1E+5``) as numbers.

    PyYAML follows YAML 1.1, where ``3e-4`` is a string; recipes and overrides mean the number.
    """


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_value(text: str) -> Any:
    """Parse one YAML value the way recipe files are parsed (``10``, ``3e-4``, ``[1, 2]``, ``null``)."""
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: safe


def _construct(node: yaml.Node, loader: yaml.SafeLoader, prefix: str, file: str, origins: Origins) -> Any:
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise UserError(f"{file}:{key_node.start_mark.line + 1}: keys must be strings, got {key!r}")
            dotted = f"{prefix}.{key}" if prefix else key
            if key in out:
                raise UserError(f"{file}:{key_node.start_mark.line + 1}: {dotted}: key appears twice")
            origins[dotted] = f"{file}:{key_node.start_mark.line + 1}"
            out[key] = _construct(value_node, loader, dotted, file, origins)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(v, loader, f"{prefix}[{i}]", file, origins) for i, v in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def read_yaml_with_origins(path: Path) -> tuple[dict[str, Any], Origins]:
    """Parse one YAML file into a dict plus the file:line of every key. Raises UserError on bad YAML."""
    if not path.is_file():
        raise UserError(f"recipe file {path} does not exist")
    text = path.read_text()
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        origins: Origins = {}
        data = {} if node is None else _construct(node, loader, "", str(path), origins)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(err, "problem", None) or str(err)
        raise UserError(f"{where}: invalid YAML: {problem}. Check indentation and quoting there.") from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise UserError(f"{path}: a recipe must be a mapping of keys (name:, policy:, ...), got {type(data).__name__}")
    return data, origins


def deep_merge(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """Child wins; mappings merge key by key, every other value (lists included) is replaced."""
    out = dict(base)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def read_recipe(path: Path, _seen: tuple[Path, ...] = ()) -> tuple[dict[str, Any], Origins]:
    """Read a recipe and its ``extends:`` chain (relative to the file), merged, with origins."""
    path = path.resolve()
    if path in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, path))
        raise UserError(f"extends: cycle in recipes: {chain}")
    data, origins = read_yaml_with_origins(path)
    parent = data.pop("extends", None)
    if parent is None:
        return data, origins
    if not isinstance(parent, str):
        raise UserError(f"{origins['extends']}: extends: expected a path to a recipe file, got {parent!r}")
    parent_path = (path.parent / parent)
    if not parent_path.is_file():
        raise UserError(f"{origins['extends']}: extends: {parent_path} does not exist")
    if parent_path.resolve() in (*_seen, path):  # named at the extends: line that closes the cycle
        chain = " -> ".join(str(p) for p in (*_seen, path, parent_path.resolve()))
        raise UserError(f"{origins['extends']}: extends: cycle in recipes: {chain}")
    base, base_origins = read_recipe(parent_path, (*_seen, path))
    return deep_merge(base, data), {**base_origins, **origins}


def apply_override(data: dict[str, Any], origins: Origins, override: str) -> None:
    """Apply one ``dotted.key=value`` override in place; the value is parsed as YAML (``10``, ``[1,2]``)."""
    if "=" not in override:
        raise UserError(f"override {override!r}: expected dotted.key=value, e.g. train.steps=10")
    key, raw = override.split("=", 1)
    key = key.strip()
    if not key or any(not part.isidentifier() for part in key.split(".")):
        raise UserError(f"override {override!r}: {key!r} is not a dotted key like train.steps")
    try:
        value = load_value(raw) if raw.strip() else None
    except yaml.YAMLError:
        raise UserError(f"override {override!r}: the value {raw!r} is not valid YAML; quote it") from None
    parts = key.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:  # absent, or an empty section (``eval:``)
            child = node[part] = {}
        if not isinstance(child, dict):
            prefix = ".".join(parts[: i + 1])
            raise UserError(f"override {override!r}: {prefix} is a value, not a section; it has no key {parts[i + 1]!r}")
        node = child
    node[parts[-1]] = value
    origins[key] = f"override {override!r}"
