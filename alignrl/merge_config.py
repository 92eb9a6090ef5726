"""The ``alignrl merge`` config: mergekit's YAML schema for the methods we share, parsed strictly.

    merge_method: ties                      # linear | slerp | task_arithmetic | ties | dare_linear | dare_ties
    base_model: models/base                 #   | model_stock | liti (ours: WARP's interpolation towards init)
    models:
      - model: models/a
        parameters: {weight: 0.6, density: [0.2, 0.8]}
      - model: models/b
        parameters: {weight: 0.4, density: 0.5}
    parameters: {normalize: true, int8_mask: true}
    dtype: float32                          # compute (and saved) dtype; out_dtype: the saved one if different

A parameter value is a number/bool, a list of numbers (a *gradient*, interpolated over the decoder layers),
or a list of ``{filter: SUBSTRING, value: V}`` entries (the first whose filter occurs in the tensor's name
wins; an entry without a filter matches all). Semantics follow mergekit 0.1.5 exactly (checked against it
in tests): a gradient is np.interp(x, linspace(0, 1, n), values) with x = i/(L − 1) for decoder layer i of
L (1 for a one-layer model) and x = 0 for tensors outside the layers (embeddings, final norm, lm_head);
per-model parameters fall back to the top-level ``parameters``, then to the method's default.

Unlike mergekit, nothing is silently ignored: an unknown key, a parameter the method does not take, a
model reference with ``@revision`` or ``+lora``, ``slices:``/``modules:`` (frankenmerges) and tokenizer
unions are refused with a message naming the key and line.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from alignrl.errors import UserError
from alignrl.models.loading import DTYPES
from alignrl.schema import fail
from alignrl.yaml_loader import Origins, read_yaml_with_origins

# method -> (per-model parameters with their defaults (None: required), global parameters with defaults)
METHODS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "linear": ({"weight": None}, {"normalize": True}),
    "slerp": ({}, {"t": None}),
    "task_arithmetic": ({"weight": None}, {"normalize": False, "lambda": 1.0, "int8_mask": False}),
    "ties": ({"weight": None, "density": 1.0}, {"normalize": True, "lambda": 1.0, "int8_mask": False}),
    "dare_linear": ({"weight": None, "density": 1.0},
                    {"normalize": False, "rescale": True, "lambda": 1.0, "int8_mask": False}),
    "dare_ties": ({"weight": None, "density": 1.0},
                  {"normalize": False, "rescale": True, "lambda": 1.0, "int8_mask": False}),
    "model_stock": ({}, {"filter_wise": False}),
    "liti": ({}, {"eta": None}),
}
NEEDS_BASE = {"slerp", "task_arithmetic", "ties", "dare_linear", "dare_ties", "model_stock", "liti"}
TOP_KEYS = ("merge_method", "base_model", "models", "parameters", "dtype", "out_dtype", "tokenizer_source",
            "random_seed")
REFUSED_TOP_KEYS = {
    "slices": "slices (layer-range frankenmerges) are not supported; list whole models under models:",
    "modules": "modules are not supported; list whole models under models:",
    "tokenizer": "tokenizer (vocabulary surgery) is not supported; the inputs must share one tokenizer, which is "
                 "copied from base_model (or tokenizer_source)",
    "chat_template": "chat_template is not supported; the base model's tokenizer files (and chat template) are "
                     "copied as they are",
}
_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")


@dataclass(frozen=True)
class MergeInput:
    model: str
    """An HF model folder (local path)."""
    parameters: dict[str, Any] = field(default_factory=dict)
    key: str = ""
    """Where it came from in the YAML, for messages (``models[1]``)."""


@dataclass(frozen=True)
class MergeConfig:
    merge_method: str
    models: tuple[MergeInput, ...]
    base_model: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    dtype: str | None = None
    out_dtype: str | None = None
    tokenizer_source: str | None = None
    random_seed: int = 0
    """Seed of DARE's drop masks (mergekit: --random-seed); the same seed gives the same merge."""
    source: Path | None = None
    origins: Origins = field(default_factory=dict, repr=False, compare=False)

    @property
    def inputs(self) -> tuple[MergeInput, ...]:
        """The merged models in order, the base appended when it is not listed (as mergekit does)."""
        listed = [m.model for m in self.models]
        if self.base_model is None or self.base_model in listed:
            return self.models
        return (*self.models, MergeInput(self.base_model, {}, "base_model"))

    def fail(self, key: str, message: str) -> NoReturn:
        fail(key, self.origins, message)


def _check_value(value: Any, key: str, origins: Origins) -> None:
    """A parameter value: scalar, list of numbers, or list of {filter, value} entries (recursively)."""
    if isinstance(value, (bool, int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            fail(key, origins, f"{value} is not a finite number")
        return
    if isinstance(value, dict):
        value = [value]
    if isinstance(value, list) and value:
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return
        for i, entry in enumerate(value):
            if not isinstance(entry, dict) or "value" not in entry:
                fail(f"{key}[{i}]", origins, "expected a number, a list of numbers (a gradient over the layers) or "
                     "a list of {filter: NAME_PART, value: V} entries")
            unknown = set(entry) - {"filter", "value"}
            if unknown:
                fail(f"{key}[{i}]", origins, f"unknown key(s) {sorted(unknown)}; an entry has filter and value")
            if "filter" in entry and not isinstance(entry["filter"], str):
                fail(f"{key}[{i}].filter", origins, f"expected a part of a tensor name, got {entry['filter']!r}")
            _check_value(entry["value"], f"{key}[{i}].value", origins)
        return
    fail(key, origins, f"expected a number, a list of numbers or filter entries, got {value!r}")


def _check_params(params: Any, allowed: set[str], method: str, key: str, origins: Origins) -> dict[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, dict):
        fail(key, origins, f"expected a mapping of parameter names to values, got {params!r}")
    for name, value in params.items():
        if name not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            fail(f"{key}.{name}", origins, f"{method} takes no parameter {name!r} here (it takes: {known})")
        _check_value(value, f"{key}.{name}", origins)
    return dict(params)


def _model_ref(value: Any, key: str, origins: Origins) -> str:
    if isinstance(value, dict) and set(value) == {"model"}:  # mergekit's long form {model: path}
        value = value["model"]
    if not isinstance(value, str) or not value:
        fail(key, origins, f"expected a model folder path, got {value!r}")
    if "@" in value or "+" in value:
        fail(key, origins, f"{value!r}: revisions (@rev) and LoRA adapters (+lora) are not supported; give a local "
             "HF folder (merge a LoRA first with `alignrl export --what lora-merged`)")
    path = Path(value).expanduser()
    folder = path if path.is_absolute() else Path.cwd() / path
    if not (folder / "config.json").is_file():
        fail(key, origins, f"{value} is not an HF model folder (no config.json); nothing is fetched from a hub")
    return str(folder)


def load_merge_config(path: Path) -> MergeConfig:
    """Parse and check a mergekit-style merge YAML (module docstring); ``UserError`` names the key and line."""
    data, origins = read_yaml_with_origins(Path(path))
    for key in data:
        if key in REFUSED_TOP_KEYS:
            fail(key, origins, REFUSED_TOP_KEYS[key])
        if key not in TOP_KEYS:
            fail(key, origins, f"unknown key; valid keys: {', '.join(TOP_KEYS)}")
    method = data.get("merge_method")
    if method not in METHODS:
        fail("merge_method", origins, f"{method!r} is not a merge method we implement; use one of {', '.join(METHODS)}")
    per_model, shared = METHODS[method]
    base = _model_ref(data["base_model"], "base_model", origins) if data.get("base_model") is not None else None
    if method in NEEDS_BASE and base is None:
        fail("merge_method", origins, f"{method} merges task vectors or interpolates from a base: set base_model")
    raw_models = data.get("models")
    if not isinstance(raw_models, list) or not raw_models:
        fail("models", origins, "expected a list of {model: PATH, parameters: {...}} entries")
    models = []
    for i, entry in enumerate(raw_models):
        key = f"models[{i}]"
        if isinstance(entry, str):
            entry = {"model": entry}
        if not isinstance(entry, dict) or "model" not in entry:
            fail(key, origins, "expected {model: PATH, parameters: {...}}")
        unknown = set(entry) - {"model", "parameters"}
        if unknown:
            fail(f"{key}.{sorted(unknown)[0]}", origins, "unknown key; an entry has model and parameters")
        ref = _model_ref(entry["model"], f"{key}.model", origins)
        params = _check_params(entry.get("parameters"), set(per_model), method, f"{key}.parameters", origins)
        models.append(MergeInput(ref, params, key))
    params = _check_params(data.get("parameters"), set(per_model) | set(shared), method, "parameters", origins)
    for key in ("dtype", "out_dtype"):
        if data.get(key) is not None and data[key] not in DTYPES:
            fail(key, origins, f"{data[key]!r}: use one of {', '.join(DTYPES)}")
    tok = data.get("tokenizer_source")
    if tok is not None:
        if tok == "union":
            pass  # accepted when every input has the same tokenizer (checked when merging), like mergekit's union
        elif tok != "base":
            tok = _model_ref(tok, "tokenizer_source", origins)
    seed = data.get("random_seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        fail("random_seed", origins, f"expected an integer, got {seed!r}")
    cfg = MergeConfig(merge_method=method, models=tuple(models), base_model=base, parameters=params,
                      dtype=data.get("dtype"), out_dtype=data.get("out_dtype"), tokenizer_source=tok,
                      random_seed=seed, source=Path(path), origins=origins)
    _check_arity(cfg)
    return cfg


def _check_arity(cfg: MergeConfig) -> None:
    n = len(cfg.inputs)
    others = n - (1 if cfg.base_model is not None else 0)
    rules = {"slerp": (others == 1, "exactly two models: base_model (t = 0) and one other (t = 1)"),
             "liti": (others == 1, "base_model (θ_init, η = 0) and exactly one other model (θ_merged, η = 1)"),
             "model_stock": (others >= 2, "base_model and at least two fine-tuned models")}
    default = (others >= 1, "at least one model besides base_model") if cfg.base_model else (n >= 1, "a model")
    ok, need = rules.get(cfg.merge_method, default)
    if not ok:
        cfg.fail("models", f"{cfg.merge_method} needs {need}; got {n} model(s)")


def layer_position(tensor_name: str, num_layers: int) -> float:
    """mergekit's gradient coordinate: i/(L − 1) for decoder layer i (1.0 when L = 1), 0.0 outside the layers."""
    m = _LAYER.search(tensor_name)
    if m is None:
        return 0.0
    return 1.0 if num_layers <= 1 else int(m.group(1)) / (num_layers - 1)


def resolve_value(value: Any, tensor_name: str, x: float) -> Any:
    """A parameter's value for one tensor: scalars as they are, gradients interpolated at ``x``, filter lists
    by their first entry whose filter occurs in ``tensor_name`` (None when none matches: fall back)."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, dict):
        value = [value]
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        if len(value) == 1:
            return float(value[0])
        scaled = x * (len(value) - 1)
        low = min(int(scaled), len(value) - 1)
        high = min(len(value) - 1, low + 1)
        frac = scaled - low
        return (1.0 - frac) * float(value[low]) + frac * float(value[high])
    for entry in value:
        pattern = entry.get("filter")
        if pattern is None or pattern == "*" or pattern in tensor_name:
            return resolve_value(entry["value"], tensor_name, x)
    return None


def parameter(cfg: MergeConfig, name: str, tensor_name: str, x: float, model: MergeInput | None = None) -> Any:
    """The value of parameter ``name`` for one tensor (and one input model for per-model parameters):
    the model's own, else the top-level one, else the method's default; ``UserError`` if required and unset."""
    per_model, shared = METHODS[cfg.merge_method]
    for scope in ([model.parameters] if model is not None else []) + [cfg.parameters]:
        if name in scope:
            got = resolve_value(scope[name], tensor_name, x)
            if got is not None:
                return got
    default = per_model.get(name, shared.get(name))
    if default is None:
        where = f"{model.key}.parameters" if model is not None else "parameters"
        raise UserError(f"{cfg.source}: {where}.{name}: {cfg.merge_method} needs {name!r} for tensor {tensor_name} "
                        f"({model.model if model else 'all inputs'}); set it there or in the top-level parameters")
    return default
