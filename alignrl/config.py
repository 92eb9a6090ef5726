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
import alignrl.rewards  # noqa: F401  (registers reward-ensemble aggregations)
import alignrl.tasks  # noqa: F401  (registers tasks, so tasks:// sources are checked at load time)
from alignrl.errors import UserError
from alignrl.models.paths import MAKE_A_MODEL, model_dir_problem
from alignrl.objectives.anchor_term import CoefSchedule
from alignrl.objectives.online_rl import ALGORITHMS as ONLINE_RL
from alignrl.registry import DIVERGENCES, REWARD_AGGREGATIONS, TRAIN_LOSSES
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
class SoupConfig:
    """A model soup θ = Σ_i w_i·θ_i / Σ_i w_i of same-architecture folders sharing one tokenizer (Wortsman et al.
    2022; SALSA, Chegini et al. 2024, uses it as the RLHF reference and starting point)."""

    paths: tuple[str, ...]
    weights: tuple[float, ...] | None = None
    """One per path (normalised); None = uniform."""

    def __post_init__(self) -> None:
        if len(self.paths) < 2:
            raise ValueError(f"paths must list at least two model folders, got {len(self.paths)}")
        if self.weights is not None and (len(self.weights) != len(self.paths) or sum(self.weights) <= 0
                                         or min(self.weights) < 0):
            raise ValueError(f"weights must be {len(self.paths)} non-negative numbers with a positive sum, got "
                             f"{self.weights}")


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelConfig:
    path: str | None = None
    """An HF model folder (config.json + weights + tokenizer), or a .gguf file to import first."""
    tiny: TinyModelConfig | None = None
    """Build a fresh tiny model instead of loading ``path``."""
    soup: SoupConfig | None = None
    """Start from the weighted average of model folders (SALSA: the policy and its ``init`` anchor are the soup)."""
    dtype: Literal["float32", "bfloat16"] = "float32"

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.path, self.tiny, self.soup)) != 1:
            raise ValueError("give exactly one of 'path' (a model folder or .gguf), 'tiny' (build a tiny model) or "
                             "'soup' ({paths: [...], weights: [...]}: average model folders)")


@dataclass(frozen=True, kw_only=True, slots=True)
class DataConfig:
    train: str
    """``tasks://NAME?key=value&...`` or a .jsonl/.json/.parquet file in TRL's dataset formats."""
    eval: str | None = None
    """Held-out examples for evaluation during and after training (same forms as ``train``)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class LoraConfig:
    """Train low-rank adapters (PEFT LoRA) instead of all weights; generators get the merged weights."""

    r: int = 16
    alpha: float = 32.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ValueError(f"r must be >= 1, got {self.r}")
        if not self.target_modules:
            raise ValueError("target_modules must name at least one module (e.g. q_proj)")


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
    micro_batch_tokens: int = 0
    """> 0: micro-batches by token budget instead (rows × padded width ≤ this; rows sorted by length, all-padding
    columns dropped; like verl's use_dynamic_bsz). SFT, online RL and distillation only."""
    pack_sequences: bool = False
    """Pack each micro-batch's sequences into rows as wide as its longest, attention kept inside each sequence: no
    compute on padding, the same logits and the same step (data/packing; OpenRLHF's packing_samples). SFT, online
    RL and distillation only."""
    max_grad_norm: float = 1.0
    bf16: bool = False
    cpus_per_worker: float = 1.0
    """Ray CPU request per learner actor (placement by resource request)."""
    lora: LoraConfig | None = None
    """LoRA adapters (``{r: 16, alpha: 32}``); null trains every weight."""

    def __post_init__(self) -> None:
        # Each message starts with the field's name: schema.build then reports that field's key and line.
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.micro_batch_size < 1:
            raise ValueError(f"micro_batch_size must be >= 1, got {self.micro_batch_size}")
        if self.micro_batch_tokens < 0:
            raise ValueError(f"micro_batch_tokens must be >= 0 (0: micro_batch_size rows), "
                             f"got {self.micro_batch_tokens}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if len(self.betas) != 2:
            raise ValueError(f"betas must be two numbers, got {list(self.betas)}")
        if self.lora is not None and self.zero_stage == 3:
            raise ValueError("lora with zero_stage 3 is not supported (the merged-weight gather assumes whole "
                             "parameters on each rank); use zero_stage 0-2")


@dataclass(frozen=True, kw_only=True, slots=True)
class TrainConfig:
    steps: int
    """Optimizer steps."""
    batch_size: int = 32
    """Sequences per optimizer step over all workers (= workers * micro_batch_size * accumulation)."""
    max_length: int = 128
    """Prompt + completion tokens; longer examples are fitted by ``truncation``."""
    truncation: Literal["prompt_left", "keep_start", "error"] = "prompt_left"
    """prompt_left: drop prompt tokens from the left, never cut a completion (one that alone is too long is an
    error); keep_start: keep the first max_length tokens, cutting the completion's end (TRL's default); error:
    refuse any example over max_length. SFT, preference and reward-model data."""
    max_prompt_length: int | None = None
    """Keep only the prompt's last N tokens before fitting to max_length (TRL's former max_prompt_length)."""
    log_every: int = 10
    eval_every: int = 0
    """Evaluate on data.eval every N steps (0: only at the end)."""
    checkpoint_every: int = 0
    """Save a checkpoint every N steps (0: only at the end)."""
    max_bad_steps: int = 3
    """A step with NaN/inf rewards, advantages, loss or gradient norm is skipped (the optimizer untouched, the
    cause noted in metrics.jsonl); after this many consecutive skipped steps the run stops (0: at the first)."""

    def __post_init__(self) -> None:
        if self.max_bad_steps < 0:
            raise ValueError(f"max_bad_steps must be >= 0, got {self.max_bad_steps}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_length < 2:
            raise ValueError(f"max_length must be >= 2, got {self.max_length}")
        if self.max_prompt_length is not None and not 1 <= self.max_prompt_length < self.max_length:
            raise ValueError(f"max_prompt_length must be in [1, max_length), got {self.max_prompt_length}")


@dataclass(frozen=True, kw_only=True, slots=True)
class EvalConfig:
    n: int = 200
    """Examples from data.eval to score."""
    max_new_tokens: int = 16
    k: int = 4
    """Samples per prompt for pass@k (at ``temperature``); 0 skips sampling."""
    temperature: float = 1.0
    engine: Literal["hf", "vllm"] = "hf"
    pairs: str | None = None
    """Preference jobs: held-out pairs (``prefs://`` or a TRL-format file) for pair accuracy and margin of the
    policy's log-ratio to its reference, and the loss; the first ``n`` are used."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ExportConfig:
    enabled: bool = True
    """Write ``runs/<name>/export``: an HF folder transformers and vLLM load."""
    what: Literal["policy"] = "policy"


@dataclass(frozen=True, kw_only=True, slots=True)
class RolloutConfig:
    """Generation workers of online RL (each a Ray actor owning one engine)."""

    engine: Literal["vllm", "hf"] = "vllm"
    workers: int = 1
    """Rollout actors; each prompt batch is split evenly over them."""
    max_new_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    kv_cache_gib: float = 0.5
    """vLLM KV cache per worker on CPU."""
    sync_bucket_mb: float = 64.0
    """Weight sync learner -> rollout: tensors go in buckets of at most this many MiB (whole layers), one
    call per bucket."""
    placement: Literal["separate", "colocated"] = "separate"
    """separate: rollout and learner actors get their own resources; colocated: rollout worker i shares
    learner worker i's placement-group bundle (they take turns)."""
    max_staleness: int = 0
    """Asynchronous rollout: the rollout workers generate (and the scorers score) the batches of up to this many
    future steps while the learner trains, so a batch may have been sampled by weights up to this many updates
    old (``train/staleness`` logs it). 0: synchronous, exactly on-policy. Stale batches are corrected by the
    PPO clip around the sampling weights, or, with algorithm.tis_cap, by decoupled PPO with truncated importance
    weights (``algorithm.tis_level`` token | sequence; ``train/tis_*`` logs them). The pipeline drains before
    eval and checkpoint steps, so those and a resumed run see freshly synced weights. Needs placement:
    separate (colocated actors take turns anyway)."""
    overlap: bool = False
    """Shorthand for max_staleness: 1 (generate step k+1's batch while step k trains)."""
    stream_scoring: bool = True
    """Score each rollout worker's part (reference/teacher log-probs, reward models) as soon as it is generated,
    while the other workers still generate, instead of after the whole batch (not with dynamic sampling, which
    scores only the groups it keeps)."""

    stream_learner: bool = False
    """Also stream the learner: each part of the batch is trained on (its learner micro-batches forward and
    backward) as soon as it is scored, while other parts are still generated and scored; the optimizer step closes
    when the last part is in (``loops/streamed_step``). Needs stream_scoring, synchronous rollout, group-local
    advantages (grpo/dr_grpo with std_scope group, rloo, a group or constant baseline), no running reward
    normalization, no critic, no dynamic sampling, one update per batch and micro-batches of micro_batch_size."""

    skd_top_k: int = 0
    """Speculative KD sampling for distillation runs (SKD, Xu et al. 2024): the student proposes each token and
    the teacher (the run's `model: path` anchor) replaces it with its own sample when it is not among the
    teacher's top skd_top_k. 0 = off. Runs on the hf engine (vLLM's sampler cannot consult a teacher per
    token): one extra teacher forward per generated token."""

    @property
    def staleness_bound(self) -> int:
        """How many steps ahead the rollout may run: max_staleness, at least 1 with overlap."""
        return max(self.max_staleness, 1 if self.overlap else 0)

    def __post_init__(self) -> None:
        if self.skd_top_k < 0:
            raise ValueError(f"skd_top_k must be >= 0 (0 = off), got {self.skd_top_k}")
        if self.skd_top_k and self.engine != "hf":
            raise ValueError("skd_top_k needs engine: hf (the teacher must see every decoding step; vLLM's sampler "
                             "cannot consult it)")
        if self.max_staleness < 0:
            raise ValueError(f"max_staleness must be >= 0 (0: synchronous), got {self.max_staleness}")
        if self.staleness_bound and self.placement == "colocated":
            raise ValueError("overlap / max_staleness need placement: separate (colocated rollout and learner share "
                             "their CPUs and take turns, so there is nothing to overlap)")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 for sampling rollouts, got {self.temperature}")
        if self.sync_bucket_mb <= 0:
            raise ValueError(f"sync_bucket_mb must be > 0, got {self.sync_bucket_mb}")


@dataclass(frozen=True, kw_only=True, slots=True)
class TAIDConfig:
    """TAID's adaptive interpolation t (Shing et al. 2025; objectives/taid.py TAIDSchedule): the anchor becomes
    p_t = softmax((1 − t)·sg(log π_θ) + t·log π_teacher), t moving from t_start to t_end, faster while the
    anchor's loss keeps falling (momentum β of its relative change, step α)."""

    t_start: float = 0.4
    t_end: float = 1.0
    alpha: float = 5e-4
    beta: float = 0.99
    adaptive: bool = True
    """False: t follows the linear schedule t_start -> t_end only."""

    def __post_init__(self) -> None:
        if not (0.0 <= self.t_start < 1.0 and 0.0 < self.t_end <= 1.0 and self.t_start <= self.t_end):
            raise ValueError(f"need 0 <= t_start < 1, 0 < t_end <= 1 and t_start <= t_end, got {self.t_start}, "
                             f"{self.t_end}")
        if not 0.0 <= self.alpha <= 1.0 or not 0.0 <= self.beta < 1.0:
            raise ValueError(f"need alpha in [0, 1] and beta in [0, 1), got {self.alpha}, {self.beta}")


@dataclass(frozen=True, kw_only=True, slots=True)
class AnchorConfig:
    """One anchor term coef(step) · mask · D(π_θ ‖ anchor model)."""

    model: Literal["init", "path", "soup", "ema", "elastic_reset"] = "init"
    """init: the frozen starting policy; path: any model folder (a teacher); soup: the average of
    ``paths``; ema: an EMA of the policy; elastic_reset: an EMA that the policy is reset to every
    ``reset_every`` steps (then the EMA restarts from init)."""
    name: str | None = None
    """Label in metrics (default: the model kind, numbered if repeated)."""
    path: str | None = None
    paths: tuple[str, ...] = ()
    weights: tuple[float, ...] | None = None
    """soup: ingredient weights (normalised); None = uniform."""
    decay: float = 0.99
    """ema/elastic_reset: β of θ_ema ← β·θ_ema + (1−β)·θ."""
    reset_every: int = 0
    divergence: Component = field(default=Component("reverse_kl", None), metadata={"registry": DIVERGENCES})
    """Any registered divergence with a sampled form, e.g. ``reverse_kl`` or ``{name: js, beta: 0.5}``."""
    estimator: Literal["k1", "k2", "k3", "f_sampled", "full", "topk"] = "k3"
    """k1/k2/k3 (reverse_kl) or f_sampled (any f-divergence; objectives/anchor_term.py) on the sampled tokens,
    or full: the exact divergence over the whole vocabulary from both models' logits (any registered
    divergence; anchors in the learner only: ema / elastic_reset — ``model: ema, decay: 1.0`` is the frozen
    start hosted there), or topk: any registered divergence on the anchor's ``topk`` most likely tokens plus
    one tail bucket (divergences/topk.py; exact when topk ≥ the vocabulary), served by a ScorerWorker
    (init, path, soup anchors: a teacher)."""
    topk: int = 20
    """estimator topk: tokens per position the scorer sends (log-probs and ids), plus the tail bucket."""
    coef: float | CoefSchedule = 0.04
    """A constant, or ``{start, end, schedule: linear|cosine, steps}``."""
    mask: Literal["all", "reward_zero", "reward_nonpositive"] = "all"
    """Where the term applies: every response token, or only rollouts whose reward is 0 / ≤ 0 (KDRL)."""
    placement: Literal["loss", "reward"] = "loss"
    """loss: added to the policy loss (GRPO); reward: −coef·D_t added to the token rewards (PPO style)."""
    cpus: float = 0.5
    """Ray CPU request of this anchor's ScorerWorker (init, path, soup; moving anchors live in the learner)."""
    taid: TAIDConfig | None = None
    """TAID (estimator topk): distil towards the interpolation of the policy and this anchor, t adapted per step
    (e.g. ``taid: {t_start: 0.4}`` with ``divergence: forward_kl``, the paper's loss)."""

    def __post_init__(self) -> None:
        if (self.model == "path") != (self.path is not None):
            raise ValueError("path is required with model: path, and only there")
        if self.model == "soup" and not self.paths:
            raise ValueError("paths must list the soup's model folders")
        if self.model == "elastic_reset" and self.reset_every < 1:
            raise ValueError("reset_every must be >= 1 with model: elastic_reset")
        if not 0.0 <= self.decay <= 1.0:
            raise ValueError(f"decay must be in [0, 1], got {self.decay}")
        if self.estimator in ("k1", "k2", "k3") and self.divergence.name != "reverse_kl":
            raise ValueError(f"estimator {self.estimator} estimates reverse_kl only; use estimator: f_sampled "
                             f"for {self.divergence.name}")
        if self.estimator == "full" and self.model not in ("ema", "elastic_reset"):
            raise ValueError("estimator full needs the anchor's logits in the learner: use model: ema or "
                             "elastic_reset (model: ema with decay: 1.0 is the frozen start)")
        if self.estimator in ("full", "topk") and self.placement == "reward":
            raise ValueError(f"estimator {self.estimator} needs the policy's logits, so it is a loss term; use "
                             "placement: loss")
        if self.estimator == "topk" and self.moving:
            raise ValueError(f"estimator topk is served by a scorer; {self.model} anchors live in the learner, "
                             "use estimator: full there")
        if self.topk < 1:
            raise ValueError(f"topk must be >= 1, got {self.topk}")
        if self.taid is not None and self.estimator != "topk":
            raise ValueError("taid interpolates the teacher's distribution: it needs estimator: topk")
        if self.estimator == "f_sampled" and not DIVERGENCES.get(self.divergence.name).has_sampled:
            raise ValueError(f"divergence {self.divergence.name} has no sampled form (not an f-divergence)")

    @property
    def moving(self) -> bool:
        """Weights that follow the policy (hosted in the learner) rather than fixed ones (a scorer)."""
        return self.model in ("ema", "elastic_reset")


@dataclass(frozen=True, kw_only=True, slots=True)
class WarpConfig:
    """WARP (Ramé et al. 2024, arXiv:2406.16768) as one job: per iteration, ``runs`` RL runs from the current init
    (each with its EMA anchor, seed + m), SLERP of their task vectors, LITI θ_init + η·(θ_slerp − θ_init)
    evaluated at every ``etas`` value (reward and KL to the SFT start: the KL-reward front), and the next
    iteration starts from the interpolant at ``eta``."""

    runs: int = 2
    iterations: int = 1
    etas: tuple[float, ...] = (0.0, 0.1, 0.3, 0.5, 0.7, 1.0)
    """LITI coefficients evaluated each iteration (their points form the front)."""
    eta: float = 0.3
    """The interpolant the next iteration (and the final export) starts from."""
    eval_samples: int = 2
    """Sampled completions per held-out prompt for the reward and KL estimates of each interpolant."""
    parallel_runs: int | None = None
    """How many of an iteration's runs train at once, each with its own actors; None: as many as the Ray
    cluster's CPUs and GPUs hold (one at a time when a run's actors ask for more than half of them)."""

    def __post_init__(self) -> None:
        if self.parallel_runs is not None and self.parallel_runs < 1:
            raise ValueError(f"parallel_runs must be >= 1 (or unset for as many as the cluster holds), got "
                             f"{self.parallel_runs}")
        if self.runs < 2:
            raise ValueError(f"runs must be >= 2 (WARP merges several RL runs), got {self.runs}")
        if self.iterations < 1 or self.eval_samples < 1:
            raise ValueError("iterations and eval_samples must be >= 1")
        if not 0.0 <= self.eta <= 1.0 or any(not 0.0 <= e <= 1.0 for e in self.etas) or not self.etas:
            raise ValueError(f"eta and etas must lie in [0, 1], got {self.eta} and {self.etas}")


@dataclass(frozen=True, kw_only=True, slots=True)
class RewardConfig:
    """One reward term of an online-RL recipe; the reward is Σ_i weight_i · normalize_i(r_i)."""

    kind: Literal["verifier", "model", "ensemble", "function"] = "verifier"
    """verifier: data.train's task (its URI's ``reward``, e.g. graded ``digits``); model: one reward model folder
    (``path``); ensemble: K reward models (``paths``) aggregated by ``aggregate``; function: ``function``."""
    name: str | None = None
    """Label in metrics (``train/reward/<name>``); default: the kind, numbered when a kind repeats."""
    weight: float = 1.0
    normalize: Literal["none", "running", "group"] = "none"
    """running: (r − μ)/σ over every reward this term gave so far; group: over each prompt's samples."""
    path: str | None = None
    paths: tuple[str, ...] = ()
    aggregate: Component = field(default=Component("mean", None), metadata={"registry": REWARD_AGGREGATIONS})
    """ensemble: mean, wco (min) or ``{name: uwo, lam: 0.5, penalty: var|std}`` (rewards/aggregate.py)."""
    function: str | None = None
    """``path/to/file.py:function_name``: called as ``fn(prompts, completions, answers) -> list[float]`` with
    one entry per completion (prompts repeated per sample; answers from the data, None where it has none)."""
    max_length: int = 512
    """Reward models: tokens scored per sequence (prompt cut from the left, like training)."""
    micro_batch_size: int = 64
    """Reward models: sequences per forward in the reward worker."""
    cpus: float = 0.5
    """Ray CPU request of this term's RewardWorker (model, ensemble)."""
    gpus: float = 0.0

    def __post_init__(self) -> None:
        needs = {"model": "path", "ensemble": "paths", "function": "function"}
        for key in ("path", "paths", "function"):
            given = bool(getattr(self, key))
            if given != (needs.get(self.kind) == key):
                raise ValueError(f"{key} is required with kind: {self.kind}" if not given else
                                 f"{key} belongs to kind: {next(k for k, v in needs.items() if v == key)}, not "
                                 f"kind: {self.kind}")
        if self.kind == "ensemble" and len(self.paths) < 2:
            raise ValueError(f"an ensemble needs at least 2 paths, got {len(self.paths)}")
        if self.aggregate.params is None:  # resolved, so a stored recipe's `aggregate: {name: mean}` reads back equal
            params = REWARD_AGGREGATIONS.entry(self.aggregate.name).params()
            object.__setattr__(self, "aggregate", Component(self.aggregate.name, params))
        if self.kind != "ensemble" and self.aggregate != Component("mean", REWARD_AGGREGATIONS.entry("mean").params()):
            raise ValueError(f"aggregate combines an ensemble's members; kind: {self.kind} has none (use kind: "
                             "ensemble with paths)")
        if self.function is not None and ":" not in self.function:
            raise ValueError(f"function {self.function!r}: write path/to/file.py:function_name")


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
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    """Online RL only: generation workers."""
    anchors: tuple[AnchorConfig, ...] = ()
    """Online RL only: terms coef · mask · D(π_θ ‖ anchor)."""
    warp: WarpConfig | None = None
    """Online RL only: run the recipe as the WARP procedure (loops/warp.py) instead of one RL run."""
    rewards: tuple[RewardConfig, ...] = ()
    """Online RL only: the reward terms (empty: data.train's verifier alone)."""

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ValueError(f"name {self.name!r} must be letters, digits, '.', '_' or '-' (it names a folder)")

    @property
    def is_online_rl(self) -> bool:
        return self.algorithm.name in ONLINE_RL

    @property
    def reward_names(self) -> tuple[str, ...]:
        """Each reward term's label: its ``name``, else its kind (numbered when a kind repeats)."""
        kinds = [r.kind for r in self.rewards]
        return tuple(
            r.name or (r.kind if kinds.count(r.kind) == 1 else f"{r.kind}{kinds[:i].count(r.kind)}")
            for i, r in enumerate(self.rewards)
        )

    @property
    def anchor_names(self) -> tuple[str, ...]:
        """Each anchor's label: its ``name``, else its model kind (numbered when a kind repeats)."""
        kinds = [a.model for a in self.anchors]
        return tuple(
            a.name or (a.model if kinds.count(a.model) == 1 else f"{a.model}{kinds[:i].count(a.model)}")
            for i, a in enumerate(self.anchors)
        )

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name


def _check_rewards(cfg: RunConfig, origins: Origins) -> None:
    import json

    if cfg.rewards and not cfg.is_online_rl and cfg.algorithm.name != "preference":
        fail("rewards", origins, f"reward terms apply to online RL algorithms ({', '.join(ONLINE_RL)}), not "
             f"{cfg.algorithm.name}")
    for i, r in enumerate(cfg.rewards):
        for j, path in enumerate([r.path] if r.path else list(r.paths)):
            key = f"rewards[{i}].path" if r.path else f"rewards[{i}].paths[{j}]"
            problem = model_dir_problem(Path(path))
            if problem is not None:
                fail(key, origins, f"{path} {problem}. Train a reward model with algorithm.name: bradley_terry "
                     "(recipes/reward_model.yaml)")
            arch = json.loads((Path(path) / "config.json").read_text()).get("architectures") or ["?"]
            if not arch[0].endswith("ForSequenceClassification"):
                fail(key, origins, f"{path} holds a {arch[0]}, not a reward model (a sequence classifier with one "
                     "label); train one with algorithm.name: bradley_terry (recipes/reward_model.yaml)")
        if r.function is not None:
            file = r.function.rsplit(":", 1)[0]
            if not Path(file).is_file():
                fail(f"rewards[{i}].function", origins, f"{file} does not exist (write path/to/file.py:function_name)")


def _check_preference(cfg: RunConfig, origins: Origins) -> None:
    from alignrl.objectives.preference_job import OFFLINE, TOKEN_LEVEL

    p = cfg.algorithm.params
    for i, name in enumerate([p.loss.name] + [e.loss.name for e in p.extra_losses]):
        if name not in OFFLINE:
            key = "algorithm.loss" if i == 0 else f"algorithm.extra_losses[{i - 1}].loss"
            fail(key, origins, f"{name} needs inputs an offline preference job does not have (a previous iterate, a "
                 f"teacher, rewards or K samples per prompt); offline losses: {', '.join(OFFLINE)}")
    names = [p.loss.name] + [e.loss.name for e in p.extra_losses]
    if "dpkd" in names and p.reference != "model":
        fail("algorithm.reference", origins, "dpkd measures the student against its teacher: set reference: model "
             "and reference_paths: [TEACHER_FOLDER]")
    if p.reference == "model" and any(n in TOKEN_LEVEL for n in names):
        fail("algorithm.reference", origins, "tdpo1/tdpo2 need the reference's full distribution at every token, "
             "which a model reference (scored once into sums) does not keep; use reference: frozen, ema or tr_dpo")
    for i, path in enumerate(p.reference_paths):
        problem = model_dir_problem(Path(path))
        if problem:
            fail(f"algorithm.reference_paths[{i}]", origins, f"{path} {problem}. {MAKE_A_MODEL}")
    if p.online and not cfg.data.train.startswith(SCHEME):
        fail("data.train", origins, "online preference rounds sample answers to a task's prompts and score them: give "
             "tasks://NAME?...")
    if not p.online and cfg.data.train.startswith(SCHEME):
        fail("data.train", origins, "a preference job trains on pairs: give prefs://TASK?... or a .jsonl/.parquet "
             "file with prompt/chosen/rejected (or set algorithm.online: true to sample pairs from the policy)")
    if cfg.rewards and not p.online:
        fail("rewards", origins, "reward terms rank sampled answers: they apply with algorithm.online: true")
    if cfg.data.eval and not cfg.data.eval.startswith(SCHEME):
        fail("data.eval", origins, "preference jobs evaluate greedy accuracy on a verifiable task: give tasks://NAME?... "
             "(held-out pairs go in eval.pairs)")
    if cfg.eval.pairs and cfg.eval.pairs.startswith(SCHEME):
        fail("eval.pairs", origins, "held-out pairs: give prefs://TASK?... or a .jsonl/.parquet file with "
             "prompt/chosen/rejected")


def _check_reward_model(cfg: RunConfig, origins: Origins) -> None:
    if cfg.learner.micro_batch_tokens and cfg.algorithm.name in ("preference", "bradley_terry"):
        fail("learner.micro_batch_tokens", origins, f"{cfg.algorithm.name} pairs rows within a micro-batch, which a "
             "token budget would split and reorder; set it to 0 and size micro-batches with learner.micro_batch_size")
    if cfg.learner.pack_sequences and cfg.algorithm.name in ("preference", "bradley_terry"):
        fail("learner.pack_sequences", origins, f"{cfg.algorithm.name} scores whole sequences (a reward head at the "
             "last token, or shared-prompt rows with their own mask), which packing would mix; set it to false")
    if cfg.algorithm.name == "preference":
        _check_preference(cfg, origins)
        return
    if cfg.algorithm.name != "bradley_terry":
        for key, source in (("data.train", cfg.data.train), ("data.eval", cfg.data.eval)):
            if source and source.startswith("prefs://"):
                fail(key, origins, f"{source} gives preference pairs, which {cfg.algorithm.name} does not train on "
                     "(algorithm.name: bradley_terry or preference do)")
        return
    p = cfg.algorithm.params
    if p.diversity > 0 and (cfg.learner.lora is None or p.members < 2):
        fail("algorithm.diversity", origins, "the nuclear-norm diversity term acts on the LoRA members of one "
             "backbone: set learner.lora and algorithm.members >= 2, or diversity: 0")
    if cfg.learner.lora is not None and cfg.learner.zero_stage == 3:
        fail("learner.lora", origins, "LoRA reward models need learner.zero_stage 0-2")
    for key, source in (("data.train", cfg.data.train), ("data.eval", cfg.data.eval)):
        if source and source.startswith(SCHEME):
            fail(key, origins, "a reward model trains on preference pairs: give prefs://TASK?... (synthetic pairs "
                 "labelled by the task's gold reward) or a .jsonl/.parquet file with prompt/chosen/rejected")


def _check_online_rl(cfg: RunConfig, origins: Origins) -> None:
    if not cfg.is_online_rl:
        if cfg.warp is not None:
            fail("warp", origins, f"WARP merges online RL runs, not {cfg.algorithm.name} runs")
        if cfg.anchors:
            fail("anchors", origins, f"anchors apply to online RL algorithms ({', '.join(ONLINE_RL)}), "
                 f"not {cfg.algorithm.name}")
        return
    p = cfg.algorithm.params
    if cfg.train.batch_size % p.group_size:
        fail("train.batch_size", origins, f"{cfg.train.batch_size} is not a multiple of algorithm.group_size = "
             f"{p.group_size} (batch_size counts sequences: prompts per step x group_size)")
    if cfg.train.batch_size % p.updates_per_step:
        fail("algorithm.updates_per_step", origins,
             f"train.batch_size {cfg.train.batch_size} is not a multiple of {p.updates_per_step}")
    if not cfg.data.train.startswith(SCHEME):
        fail("data.train", origins, "online RL needs a verifiable task for its reward: use tasks://NAME?... "
             "(reward models come with the rewards section)")
    names = cfg.anchor_names
    if len(set(names)) != len(names):
        fail("anchors", origins, f"anchor names repeat: {list(names)}; give each a distinct name")
    if p.policy_loss == "none" and not any(a.placement == "loss" for a in cfg.anchors):
        fail("anchors", origins, f"{cfg.algorithm.name} learns from its anchors only (policy_loss: none): add a "
             "teacher, e.g. anchors: [{model: path, path: TEACHER_DIR, estimator: topk}]")
    if getattr(p, "lmbda", 1.0) < 1.0:
        for i, a in enumerate(cfg.anchors):
            if a.placement == "loss" and a.estimator not in ("full", "topk"):
                fail(f"anchors[{i}].estimator", origins, f"algorithm.lmbda {p.lmbda} < 1 trains on dataset "
                     f"completions too, which the policy did not sample; estimator {a.estimator} assumes its own "
                     "samples: use estimator: topk (or full)")
    if cfg.rollout.skd_top_k:
        teachers = [a for a in cfg.anchors if a.model == "path"]
        if p.policy_loss != "none":
            fail("rollout.skd_top_k", origins, f"speculative KD sampling mixes teacher tokens into the rollouts, which "
                 f"biases {cfg.algorithm.name}'s policy gradient: use it with algorithm.name: distill")
        if len(teachers) != 1:
            fail("rollout.skd_top_k", origins, f"speculative KD needs exactly one teacher anchor (model: path), found "
                 f"{len(teachers)}")
    if cfg.warp is not None:
        if not any(a.model == "ema" for a in cfg.anchors):
            fail("warp", origins, "WARP's runs are anchored to their own EMA: add anchors: [{model: ema, decay: 0.99, "
                 "...}]")
        if not cfg.data.eval:
            fail("warp", origins, "WARP evaluates every interpolant's reward and KL on data.eval: set it")
    for i, a in enumerate(cfg.anchors):
        if a.model == "elastic_reset" and cfg.learner.zero_stage != 0:
            fail(f"anchors[{i}].model", origins, "elastic_reset rewrites the policy's weights in place, which "
                 "needs learner.zero_stage: 0 (ZeRO 1-3 keep a separate master copy)")
        if a.moving and a.placement == "reward":
            fail(f"anchors[{i}].placement", origins, f"{a.model} anchors live in the learner; placement: reward needs "
                 "a fixed anchor (init, path, soup)")
        for j, path in enumerate([a.path] if a.path else list(a.paths)):
            problem = model_dir_problem(Path(path))
            if problem is not None:
                key = f"anchors[{i}].path" if a.path else f"anchors[{i}].paths[{j}]"
                fail(key, origins, f"{path} {problem}. {MAKE_A_MODEL}")


def _check_stream_learner(cfg: RunConfig, origins: Origins) -> None:
    """rollout.stream_learner trains part by part: nothing may need the whole batch before the first update."""
    import alignrl.advantages  # noqa: F401  (registers the estimators)
    from alignrl.objectives.online_rl import advantage_params

    if not cfg.rollout.stream_learner or not cfg.is_online_rl:
        return
    p, rc = cfg.algorithm.params, cfg.rollout
    why = "rollout.stream_learner trains each part of the batch as soon as it is scored"
    if not rc.stream_scoring:
        fail("rollout.stream_scoring", origins, f"{why}: it needs stream_scoring: true")
    if rc.staleness_bound:
        fail("rollout.max_staleness", origins, f"{why}, within a synchronous step; asynchronous rollout (overlap / "
             "max_staleness) already trains while the next batch is generated: use one or the other")
    if not getattr(advantage_params(p), "group_local", False):
        fail("algorithm.advantage", origins, f"{why}, so each row's advantage must depend on its prompt group alone; "
             f"{p.advantage} with these settings normalizes over the whole batch (use grpo/dr_grpo with std_scope: "
             "group, rloo without whiten, or baseline: group_mean)")
    for i, r in enumerate(cfg.rewards):
        if r.normalize == "running":
            fail(f"rewards[{i}].normalize", origins, f"{why}; running normalization updates its statistics with the "
                 "whole batch at once: use normalize: group or none")
    for key, bad in (("algorithm.dynamic_sampling", getattr(p, "dynamic_sampling", False)),
                     ("algorithm.updates_per_step", getattr(p, "updates_per_step", 1) > 1),
                     ("learner.micro_batch_tokens", cfg.learner.micro_batch_tokens > 0),
                     ("algorithm.lmbda", getattr(p, "lmbda", 1.0) < 1.0)):
        if bad:
            fail(key, origins, f"{why}; this setting needs the whole batch first (dynamic sampling picks groups from "
                 "it, several updates split it, a token budget sorts it, λ < 1 may replace it with dataset answers): "
                 "turn one of them off")


def _check_batch_sizes(cfg: RunConfig, origins: Origins) -> None:
    per_step = cfg.learner.workers * cfg.learner.micro_batch_size
    updates = getattr(cfg.algorithm.params, "updates_per_step", 1)
    if (cfg.train.batch_size // updates) % per_step:
        fail("train.batch_size", origins, (
            f"{cfg.train.batch_size}{f' / algorithm.updates_per_step {updates}' if updates > 1 else ''} is not a "
            f"multiple of learner.workers * learner.micro_batch_size = {per_step}; "
            f"use e.g. train.batch_size={max(per_step, cfg.train.batch_size // per_step * per_step)}"
        ))


def _check_source(source: str | None, key: str, origins: Origins, base: Path) -> None:
    if source is None:
        return
    if source.startswith("prefs://"):
        from alignrl.data.synthetic_preferences import parse_prefs_uri

        try:
            parse_prefs_uri(source, key)
        except UserError as err:
            fail(key, origins, str(err).removeprefix(f"{key}: "))
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
    if cfg.soup is not None:
        for i, path in enumerate(cfg.soup.paths):
            problem = model_dir_problem(Path(path))
            if problem is not None:
                fail(f"{key}.soup.paths[{i}]", origins, f"{path} {problem}. {MAKE_A_MODEL}")
        return
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
    _check_online_rl(cfg, origins)
    _check_stream_learner(cfg, origins)
    _check_reward_model(cfg, origins)
    _check_rewards(cfg, origins)
    _check_model(cfg.policy, "policy", origins)
    for key, source in (("data.train", cfg.data.train), ("data.eval", cfg.data.eval), ("eval.pairs", cfg.eval.pairs)):
        _check_source(source, key, origins, Path.cwd())
    if cfg.eval.pairs and cfg.algorithm.name != "preference":
        fail("eval.pairs", origins, f"held-out pairs are scored by preference jobs, not {cfg.algorithm.name} "
             "(a reward model's held-out pairs go in data.eval)")
    return cfg


def recipe_to_dict(cfg: RunConfig) -> dict:
    """The fully resolved recipe as plain data (what ``validate`` prints and a run folder stores)."""
    return to_plain(cfg)


__all__ = ["RunConfig", "load_recipe", "recipe_to_dict", "UserError"]
