"""What every loop does the same way: the run folder, the starting model, data, eval and export."""

from __future__ import annotations

import json
import math
import random
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from alignrl.config import RunConfig, recipe_to_dict
from alignrl.data.sources import load_examples, task_of
from alignrl.engine.deepspeed_learner import LearnerSettings
from alignrl.errors import UserError
from alignrl.evaluation import evaluate
from alignrl.io import abandoned_writes, atomic_dir
from alignrl.models.export import save_hf_folder
from alignrl.tasks.base import Example, reward_for


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def create_run_dir(cfg: RunConfig, *, overwrite: bool) -> Path:
    """Make ``runs/<name>/`` and write the resolved recipe into it; refuse to reuse a folder silently."""
    run_dir = cfg.run_dir
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise UserError(
                f"run folder {run_dir} already exists; pick another name (name=...) or pass --overwrite to replace it"
            )
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe_to_dict(cfg), sort_keys=False))
    return run_dir


@dataclass(frozen=True)
class RunStart:
    """Where a loop begins: a new run folder at step 0, or (``--resume``) the folder's last checkpoint and the
    trainer_state.json saved with it."""

    run_dir: Path
    checkpoint: Path | None = None
    state: dict = field(default_factory=lambda: {"step": 0})

    @property
    def step(self) -> int:
        return int(self.state["step"])


def start_run(cfg: RunConfig, *, overwrite: bool, resume: bool, total_steps: int | None = None) -> RunStart:
    """A new run folder (``create_run_dir``), or with ``resume`` the last checkpoint of ``cfg.run_dir``; refuses a
    run already at ``total_steps`` (default train.steps)."""
    if not resume:
        return RunStart(create_run_dir(cfg, overwrite=overwrite))
    from alignrl.export import find_checkpoint

    run_dir = cfg.run_dir
    checkpoint = find_checkpoint(run_dir, "latest")
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    total = cfg.train.steps if total_steps is None else total_steps
    if state["step"] >= total:
        raise UserError(f"--resume {run_dir}: its last checkpoint is at step {state['step']}, the recipe stops at "
                        f"step {total}: the run is complete (raise train.steps to train on; `alignrl export {run_dir}` writes its "
                        "export)")
    return RunStart(run_dir, checkpoint, state)


def clear_abandoned_writes(start: RunStart, tracker) -> None:
    """On resume: remove checkpoint folders whose writing a kill interrupted, each noted in metrics.jsonl."""
    if start.checkpoint is None:
        return
    for partial in abandoned_writes(start.run_dir / "checkpoints"):
        tracker.note(start.step, f"resuming from {start.checkpoint.name}: removed {partial.name}, a checkpoint "
                     "whose writing was interrupted (the checkpoints before it are complete)")
        shutil.rmtree(partial, ignore_errors=True)


def restore_learner(group, start: RunStart, *, name: str = "deepspeed", updates_per_step: int = 1) -> None:
    """Weights, optimizer and LR schedule of ``group`` from the resumed checkpoint's ``name`` folder, and its hosted
    moving anchors from ``anchors/`` (policy groups only); a learner step counts ``updates_per_step`` optimizer steps."""
    step = start.step
    group.load_engine_state(str(start.checkpoint / name), f"step_{step}", step * updates_per_step)
    anchor_dir = start.checkpoint / "anchors"
    if name == "deepspeed" and anchor_dir.is_dir():
        from safetensors.torch import load_file

        group.load_anchor_states({f.stem: load_file(str(f)) for f in sorted(anchor_dir.glob("*.safetensors"))})


def has_checkpoint(run_dir: Path) -> bool:
    """Whether the run folder holds a finished checkpoint to resume from."""
    from alignrl.export import checkpoint_dirs

    return bool(checkpoint_dirs(run_dir))


def prepare_policy(cfg: RunConfig, run_dir: Path, *, resume: bool = False) -> Path:
    """The starting HF folder: a fresh tiny model, a soup or an imported GGUF go to ``run_dir/init`` (kept on
    resume)."""
    policy = cfg.policy
    if resume and (policy.path is None or policy.path.endswith(".gguf")):
        if not (run_dir / "init" / "config.json").is_file():
            raise UserError(f"--resume {run_dir}: its init/ model folder is missing; the run cannot be resumed")
        return run_dir / "init"
    if policy.tiny is not None:
        from alignrl.models.tiny import build_tiny_model

        t = policy.tiny
        return build_tiny_model(
            run_dir / "init", hidden=t.hidden, layers=t.layers, heads=t.heads, kv_heads=t.kv_heads,
            intermediate=t.intermediate, max_positions=t.max_positions, seed=cfg.seed,
        )
    if policy.soup is not None:
        return build_soup_folder(policy.soup.paths, policy.soup.weights, run_dir / "init")
    if policy.path.endswith(".gguf"):
        from alignrl.models.gguf import import_gguf

        return import_gguf(policy.path, run_dir / "init")
    return Path(policy.path).absolute()


def build_soup_folder(paths: tuple[str, ...], weights: tuple[float, ...] | None, out_dir: Path) -> Path:
    """θ = Σ_i w_i·θ_i / Σ_i w_i of the folders (``merging.linear``) written as an HF folder (first folder's
    config and tokenizer); the folders must share a tokenizer and tensor names."""
    from alignrl.merging import merge_state_dicts
    from alignrl.merging.linear import LinearParams
    from alignrl.models.export import load_hf_weights
    from alignrl.models.loading import check_same_tokenizer

    for other in paths[1:]:
        check_same_tokenizer(paths[0], other)
    states = [load_hf_weights(p) for p in paths]
    try:
        soup = merge_state_dicts("linear", states, params=LinearParams(weights=weights))
    except ValueError as err:
        raise UserError(f"policy.soup: the folders cannot be averaged ({err}); give models of one architecture") from None
    return save_hf_folder(soup, Path(paths[0]), out_dir, overwrite=True)


@dataclass(frozen=True, slots=True)
class RunData:
    train: list[Example]
    eval: list[Example]
    task: str | None  # the verifier's task name when data.eval is a tasks:// source


def load_run_data(cfg: RunConfig) -> RunData:
    """Load train/eval examples up front so bad data fails before anything is written."""
    train = load_examples(cfg.data.train, key="data.train")
    if not train:
        raise UserError(f"data.train: {cfg.data.train} has no examples")
    evals = load_examples(cfg.data.eval, key="data.eval") if cfg.data.eval else []
    if evals and len(evals) < cfg.eval.n:  # not an error (a small eval set is fine), but never silent
        print(f"alignrl: note: eval.n is {cfg.eval.n} but data.eval ({cfg.data.eval}) holds {len(evals)} examples; "
              f"evaluating on {len(evals)}", file=sys.stderr)
    evals = evals[: cfg.eval.n]
    return RunData(train, evals, task_of(cfg.data.eval) if cfg.data.eval else None)


def run_eval(engine, data: RunData, cfg: RunConfig) -> dict | None:
    """Evaluate on data.eval with the task's verifier (None when there is nothing verifiable)."""
    if not data.eval or data.task is None:
        return None
    e = cfg.eval
    return evaluate(
        engine, [x.prompt for x in data.eval], [x.answer for x in data.eval],
        lambda completions, answers: reward_for(data.task, completions, answers),
        k=e.k, temperature=e.temperature, max_new_tokens=e.max_new_tokens, seed=cfg.seed,
    )


@dataclass
class BadSteps:
    """Skipped steps (NaN/inf rewards, advantages, loss or gradients): each is noted in the run's metrics.jsonl and
    on the console; ``limit`` consecutive ones are tolerated, the next stops the run."""

    limit: int
    tracker: Any = None
    consecutive: int = 0
    total: int = 0

    def check(self, step: int, metrics: dict[str, float], reason: str | None = None) -> bool:
        """After a step: True if it was skipped (``reason``, or the learner's ``skipped`` metric says why). A
        NaN/inf loss or gradient norm in a step the learner did not skip stops the run at once (a safety net: the
        learner skips every step whose gradient norm is NaN/inf, at any ZeRO stage)."""
        prefix = "train/" if any(k.startswith("train/") for k in metrics) else ""
        if reason is None and metrics.get(f"{prefix}skipped", 0.0) > 0:
            frac = metrics.get(f"{prefix}nonfinite_loss_frac", 0.0)
            reason = (f"the loss was NaN/inf in {frac:.0%} of the micro-batches" if frac > 0 else
                      f"the gradient norm was {metrics.get(f'{prefix}grad_norm')}")
        if reason is None:
            for key in ("loss", "grad_norm"):
                value = metrics.get(f"{prefix}{key}")
                if value is not None and not math.isfinite(value):
                    raise UserError(
                        f"step {step}: {key} is {value} but the learner applied the step; training diverged. "
                        "Lower learner.lr or learner.max_grad_norm, or check the data")
            self.consecutive = 0
            return False
        self.consecutive += 1
        self.total += 1
        if self.tracker is not None:
            self.tracker.note(step, f"step {step} skipped: {reason}")
        if self.consecutive > self.limit:
            raise UserError(
                f"step {step}: {self.consecutive} consecutive steps skipped for NaN/inf values, the last because "
                f"{reason}. Training diverged or the rewards are broken: lower learner.lr, check the reward terms and "
                f"the data, or allow more with train.max_bad_steps (now {self.limit})")
        return True


def write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    tmp.replace(path)


def learner_settings(cfg: RunConfig, model_dir: Path) -> LearnerSettings:
    """The learner's settings from the recipe; online RL splits each rollout batch into updates_per_step steps."""
    lc = cfg.learner
    updates = getattr(cfg.algorithm.params, "updates_per_step", 1)
    return LearnerSettings(
        model_dir=str(model_dir), world_size=lc.workers, batch_size=cfg.train.batch_size // updates,
        micro_batch_size=lc.micro_batch_size, total_steps=cfg.train.steps * updates, lr=lc.lr, weight_decay=lc.weight_decay,
        betas=tuple(lc.betas), warmup_steps=lc.warmup_steps, lr_schedule=lc.lr_schedule, min_lr_ratio=lc.min_lr_ratio,
        max_grad_norm=lc.max_grad_norm, zero_stage=lc.zero_stage, bf16=lc.bf16, seed=cfg.seed,
        micro_batch_tokens=lc.micro_batch_tokens, pack_sequences=lc.pack_sequences,
        lora=None if lc.lora is None else {"r": lc.lora.r, "lora_alpha": lc.lora.alpha, "lora_dropout": lc.lora.dropout,
                                           "target_modules": list(lc.lora.target_modules)},
    )


def save_checkpoint(group, state: dict, model_dir: Path, run_dir: Path, step: int, *, extra: dict | None = None,
                    anchors: dict[str, dict] | None = None, others: dict | None = None) -> Path:
    """``checkpoints/step_N/{hf,deepspeed,<others>,anchors/NAME.safetensors,trainer_state.json}`` written under a temp
    name and renamed when complete; ``extra`` goes into trainer_state.json (what a resume needs)."""
    final = run_dir / "checkpoints" / f"step_{step:06d}"
    with atomic_dir(final, overwrite=True) as tmp:
        group.save_engine_state(str(tmp / "deepspeed"), tag=f"step_{step}")
        for name, other in (others or {}).items():  # more learner groups, e.g. the PPO critic
            other.save_engine_state(str(tmp / name), tag=f"step_{step}")
        save_hf_folder(state, model_dir, tmp / "hf")
        if anchors:
            from safetensors.torch import save_file

            (tmp / "anchors").mkdir()
            for name, tensors in anchors.items():
                save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / "anchors" / f"{name}.safetensors"))
        write_json(tmp / "trainer_state.json", {"step": step, **(extra or {})})
    return final


def every(step: int, period: int) -> bool:
    return bool(period) and step % period == 0


def shuffled_index_batches(n: int, batch_size: int, seed: int):
    """Endless lists of ``batch_size`` indices into ``n`` items, reshuffled each epoch by ``random.Random(seed)``;
    a short last batch of an epoch is dropped. The SFT, reward-model and preference loops collate from these."""
    rng = random.Random(seed)
    order = list(range(n))
    while True:
        rng.shuffle(order)
        for start in range(0, n - batch_size + 1, batch_size):
            yield order[start:start + batch_size]


def skip(batches, n: int):
    """``batches`` after its first ``n`` items: a resumed run takes up the data stream where its checkpoint left it
    (the epoch order derives from the seed, so the items skipped are the ones the run trained on)."""
    for _ in range(n):
        next(batches)
    return batches


def train_and_log(group, batch, loss_fn, step: int, last_step: int, log_every: int, tracker,
                  bad_steps: BadSteps) -> dict[str, float]:
    """One learner step: train (a step with a NaN/inf loss or gradient is skipped and counted by ``bad_steps``),
    log ``train/*`` every ``log_every`` steps, at ``last_step`` and at every skipped step; returns its metrics."""
    metrics = group.train_step(batch, loss_fn)
    if bad_steps.check(step, metrics) or step % log_every == 0 or step == last_step:
        tracker.log(step, {f"train/{k}": v for k, v in metrics.items()} | {"loss": metrics["loss"]})
    return metrics


def finish_run(run_dir: Path, final: dict | None, curves: tuple[str, ...]) -> None:
    """After a run: ``eval.json`` (when there is a final evaluation) and ``learning_curves.png`` of ``curves``."""
    from alignrl.tracking import plot_metrics

    if final:
        write_json(run_dir / "eval.json", final)
    plot_metrics(run_dir / "metrics.jsonl", run_dir / "learning_curves.png", curves)
