"""Recipe YAML -> one frozen ``RunConfig`` tree, validated before anything runs.

``load_recipe(path, overrides)`` reads the file and its ``extends:`` chain, applies dotted
overrides (``train.steps=10``), builds the dataclasses strictly (``schema.build``) and checks that
the files the recipe names exist. Every error is a ``UserError`` naming the key, file and line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import alignrl.objectives  # noqa: F401  (registers training objectives)
import alignrl.tasks  # noqa: F401  (registers tasks, so tasks:// sources are checked at load time)
from alignrl.errors import UserError
from alignrl.models.paths import MAKE_A_MODEL, model_dir_problem
from alignrl.registry import TRAIN_LOSSES
from alignrl.schema import Component, build, fail, to_plain
from alignrl.tasks.base import SCHEME, parse_task_uri
from alignrl.yaml_loader import Origins, apply_override, read_recipe

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True, kw_only=True, slots=True)
class TinyModelConfig:
    """A fresh tiny character-level Llama built into the run folder (tests and demos)."""

    hidden: int = 128
    layers: int = 2
    heads: int = 4
    kv_heads: int | None = None
    intermediate: int | None = None
    max_positions: int = 256


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelConfig:
    path: str | None = None
    """An HF model folder (config.json + weights + tokenizer), or a .gguf file to import first."""
    tiny: TinyModelConfig | None = None
    """Build a fresh tiny model instead of loading ``path`` (exactly one of the two)."""
    dtype: Literal["float32", "bfloat16"] = "float32"

    def __post_init__(self) -> None:
        if (self.path is None) == (self.tiny is None):
            raise ValueError("give exactly one of 'path' (a model folder or .gguf) or 'tiny' (build a tiny model)")


@dataclass(frozen=True, kw_only=True, slots=True)
class DataConfig:
    train: str
    """``tasks://NAME?key=value&...`` or a .jsonl/.json/.parquet file in TRL's dataset formats."""
    eval: str | None = None
    """Held-out examples for evaluation during and after training (same forms as ``train``)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class LearnerConfig:
    workers: int = 1
    """Data-parallel DeepSpeed learner actors (each holds a model replica or ZeRO shard)."""
    zero_stage: Literal[0, 1, 2, 3] = 0
    lr: float = 1.0e-3
    weight_decay: float = 0.0
    betas: tuple[float, ...] = (0.9, 0.999)
    warmup_steps: int = 0
    lr_schedule: Literal["constant", "cosine"] = "constant"
    min_lr_ratio: float = 0.0
    """For cosine: the final lr as a fraction of ``lr``."""
    micro_batch_size: int = 32
    """Sequences per forward/backward on one worker; gradient accumulation makes up the rest."""
    max_grad_norm: float = 1.0
    bf16: bool = False
    cpus_per_worker: float = 1.0
    """Ray CPU request per learner actor (placement by resource request)."""

    def __post_init__(self) -> None:
        # Each message starts with the field's name: schema.build then reports that field's key and line.
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.micro_batch_size < 1:
            raise ValueError(f"micro_batch_size must be >= 1, got {self.micro_batch_size}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if len(self.betas) != 2:
            raise ValueError(f"betas must be two numbers, got {list(self.betas)}")


@dataclass(frozen=True, kw_only=True, slots=True)
class TrainConfig:
    steps: int
    """Optimizer steps."""
    batch_size: int = 32
    """Sequences per optimizer step over all workers (= workers * micro_batch_size * accumulation)."""
    max_length: int = 128
    """Prompt + completion tokens; longer examples are cut from the left of the prompt."""
    log_every: int = 10
    eval_every: int = 0
    """Evaluate on data.eval every N steps (0: only at the end)."""
    checkpoint_every: int = 0
    """Save a checkpoint every N steps (0: only at the end)."""

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_length < 2:
            raise ValueError(f"max_length must be >= 2, got {self.max_length}")


@dataclass(frozen=True, kw_only=True, slots=True)
class EvalConfig:
    n: int = 200
    """Examples from data.eval to score."""
    max_new_tokens: int = 16
    k: int = 4
    """Samples per prompt for pass@k (at ``temperature``); 0 skips sampling."""
    temperature: float = 1.0
    engine: Literal["hf", "vllm"] = "hf"


@dataclass(frozen=True, kw_only=True, slots=True)
class ExportConfig:
    enabled: bool = True
    """Write ``runs/<name>/export``: an HF folder transformers and vLLM load."""
    what: Literal["policy"] = "policy"


@dataclass(frozen=True, kw_only=True, slots=True)
class RayConfig:
    address: str | None = None
    """None starts an embedded local Ray; ``auto`` or ``ray://host:10001`` joins a cluster."""
    num_cpus: int | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class RunConfig:
    name: str
    """Run folder name under ``output_dir``."""
    policy: ModelConfig
    data: DataConfig
    train: TrainConfig
    algorithm: Component = field(metadata={"registry": TRAIN_LOSSES})
    """The objective, by registered name with its parameters, e.g. ``{name: sft, loss_agg: token_mean}``."""
    seed: int = 0
    output_dir: str = "runs"
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    ray: RayConfig = field(default_factory=RayConfig)

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ValueError(f"name {self.name!r} must be letters, digits, '.', '_' or '-' (it names a folder)")

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name


def _check_batch_sizes(cfg: RunConfig, origins: Origins) -> None:
    per_step = cfg.learner.workers * cfg.learner.micro_batch_size
    if cfg.train.batch_size % per_step:
        fail("train.batch_size", origins, (
            f"{cfg.train.batch_size} is not a multiple of learner.workers * learner.micro_batch_size = {per_step}; "
            f"use e.g. train.batch_size={max(per_step, cfg.train.batch_size // per_step * per_step)}"
        ))


def _check_source(source: str | None, key: str, origins: Origins, base: Path) -> None:
    if source is None:
        return
    if source.startswith(SCHEME):
        try:
            parse_task_uri(source)  # unknown task, unknown key or bad value: caught here, not at run time
        except UserError as err:
            fail(key, origins, str(err))
        return
    path = Path(source) if Path(source).is_absolute() else base / source
    if not path.is_file():
        fail(key, origins, f"data file {source} does not exist (give a .jsonl/.parquet file or tasks://NAME?...)")


def _check_model(cfg: ModelConfig, key: str, origins: Origins) -> None:
    if cfg.path is None:
        return
    path = Path(cfg.path)
    if path.suffix == ".gguf":
        if not path.is_file():
            fail(f"{key}.path", origins, f"GGUF file {path} does not exist")
        return
    problem = model_dir_problem(path)
    if problem is not None:
        fail(f"{key}.path", origins, f"{path} {problem}. {MAKE_A_MODEL}, or use `tiny: {{}}` to build a fresh tiny model")


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read, override, build and check a recipe. Raises UserError naming the key, file and line."""
    data, origins = read_recipe(Path(path))
    origins[""] = str(path)  # where keys without an origin of their own (a missing section) are reported
    for override in overrides:
        apply_override(data, origins, override)
    cfg = build(RunConfig, data, "", origins)
    _check_batch_sizes(cfg, origins)
    _check_model(cfg.policy, "policy", origins)
    for key, source in (("data.train", cfg.data.train), ("data.eval", cfg.data.eval)):
        _check_source(source, key, origins, Path.cwd())
    return cfg


def recipe_to_dict(cfg: RunConfig) -> dict:
    """The fully resolved recipe as plain data (what ``validate`` prints and a run folder stores)."""
    return to_plain(cfg)


__all__ = ["RunConfig", "load_recipe", "recipe_to_dict", "UserError"]
