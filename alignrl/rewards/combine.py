"""The recipe's ``rewards:`` terms combined into one reward per completion: r = Σ_i w_i · normalize_i(r_i).

Terms: the task's verifier (its URI's reward, e.g. graded ``digits``), a reward model or an ensemble (each a
RewardWorker actor; an ensemble's K scores go through ``rewards.aggregate``), or a user function loaded from
``path/to/file.py:name``. All reward-model calls are sent before the local terms are computed, so the workers
score side by side. ``correct`` (exact accuracy, what ``mask: reward_zero`` and train/accuracy read) always
comes from the task's verifier. Running-normalization statistics are part of the checkpoint.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from alignrl.errors import UserError
from alignrl.registry import REWARD_AGGREGATIONS
from alignrl.rewards.aggregate import aggregate_rewards
from alignrl.rewards.normalize import EPS, RunningStats, normalize_group, normalize_running


@dataclass(frozen=True, slots=True)
class Scored:
    rewards: torch.Tensor   # (B,) the combined reward
    correct: torch.Tensor   # (B,) the task verifier's exact 1/0 (all 0 without a verifiable task)
    metrics: dict[str, float]


def load_reward_function(spec: str) -> Callable:
    """``path/to/file.py:name`` -> the function (the file is imported as a module of its own)."""
    file, _, name = spec.rpartition(":")
    path = Path(file)
    if not path.is_file():
        raise UserError(f"rewards[].function {spec!r}: {file} does not exist")
    module_spec = importlib.util.spec_from_file_location(f"alignrl_user_reward_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as err:  # the user's file: whatever it raises, say where
        raise UserError(f"rewards[].function {spec!r}: importing {file} failed: {type(err).__name__}: {err}") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise UserError(f"rewards[].function {spec!r}: {file} defines no function {name!r}")
    return fn


class RewardSet:
    """Holds the terms (and their workers); ``score`` combines them for one batch of completions."""

    def __init__(self, terms, names: tuple[str, ...], task_uri: str | None, group_size: int,
                 state: dict | None = None) -> None:
        from alignrl.actors.reward import RewardModels

        if not terms or len(terms) != len(names):
            raise ValueError("RewardSet needs at least one term and one name per term")
        self.terms, self.names = tuple(terms), tuple(names)
        self.task_uri = task_uri
        self.group_size = group_size
        self.stats = {n: RunningStats(**(state or {}).get(n, {})) for n in self.names}
        self.functions = {n: load_reward_function(t.function) for n, t in zip(self.names, self.terms)
                          if t.kind == "function"}
        self.workers = {}
        try:
            for n, t in zip(self.names, self.terms):
                if t.kind in ("model", "ensemble"):
                    self.workers[n] = RewardModels(n, [t.path] if t.path else list(t.paths), max_length=t.max_length,
                                                   micro_batch_size=t.micro_batch_size, cpus=t.cpus, gpus=t.gpus)
        except BaseException:
            self.shutdown()
            raise

    def score_models_async(self, prompts: list[str], completions: list[str]) -> dict[str, Any]:
        """Start the reward-model terms on some completions (one ref per term), e.g. a part of the batch that
        finished generating early; pass the refs of all parts, in row order, to ``score(model_parts=...)``."""
        return {n: w.score_async(prompts, completions) for n, w in self.workers.items()}

    def score(self, prompts: list[str], completions: list[str], answers: list[str | None],
              model_parts: dict[str, list[Any]] | None = None) -> Scored:
        """Rewards for B completions (prompts and answers repeated per sample, grouped by prompt).

        ``model_parts``: per reward-model term, the refs ``score_models_async`` returned for consecutive parts
        of these completions (their scores are joined instead of scoring again)."""
        from alignrl.tasks.base import parse_task_uri, reward_for

        if model_parts is None:
            model_parts = {n: [ref] for n, ref in self.score_models_async(prompts, completions).items()}
        total = torch.zeros(len(completions))
        metrics: dict[str, float] = {}
        for n, t in zip(self.names, self.terms):
            if t.kind == "verifier":
                raw = torch.tensor(reward_for(self._task(), completions, answers), dtype=torch.float32)
            elif t.kind == "function":
                raw = self._call_function(n, t, prompts, completions, answers)
            else:
                scores = torch.cat([self.workers[n].get(ref, "scoring") for ref in model_parts[n]], dim=-1)
                if t.kind == "ensemble":
                    raw, member_metrics = aggregate_rewards(scores, t.aggregate.name, _aggregate_params(t))
                    metrics.update({f"train/reward/{n}/{k}": float(v) for k, v in member_metrics.items()})
                else:
                    raw = scores[0]
            metrics[f"train/reward/{n}"] = float(raw.mean())
            total = total + t.weight * self._normalize(n, t.normalize, raw)
        correct = torch.zeros(len(completions))
        if self.task_uri is not None:  # the bare task name: its exact verifier, whatever reward the URI picks
            correct = torch.tensor(reward_for(parse_task_uri(self.task_uri)[0], completions, answers),
                                   dtype=torch.float32)
        return Scored(total, correct, metrics)

    def _task(self) -> str:
        if self.task_uri is None:
            raise UserError("rewards: kind verifier needs data.train to be a task (tasks://NAME?...)")
        return self.task_uri

    def _call_function(self, name, term, prompts, completions, answers) -> torch.Tensor:
        try:
            values = self.functions[name](list(prompts), list(completions), list(answers))
            out = torch.tensor([float(v) for v in values], dtype=torch.float32)
        except Exception as err:  # the user's code: name it and stop cleanly
            raise UserError(f"reward {name!r} ({term.function}) failed: {type(err).__name__}: {err}") from None
        if out.shape != (len(completions),):  # NaN/inf values pass: the loop skips the step and names the samples
            raise UserError(f"reward {name!r} ({term.function}) must return {len(completions)} numbers, got "
                            f"{tuple(out.shape)} values")
        return out

    def _normalize(self, name: str, how: str, raw: torch.Tensor) -> torch.Tensor:
        if how == "running":
            finite = torch.isfinite(raw)
            if finite.all():
                out, self.stats[name] = normalize_running(raw, self.stats[name])
                return out
            if finite.any():  # NaN/inf samples (their step will be skipped) must not poison the statistics
                _, self.stats[name] = normalize_running(raw[finite], self.stats[name])
            return (raw - self.stats[name].mean) / (self.stats[name].std + EPS)
        if how == "group":
            return normalize_group(raw, self.group_size)
        return raw

    def state_dict(self) -> dict:
        """Running statistics per term (what a resume needs)."""
        return {n: dataclasses.asdict(s) for n, s in self.stats.items()}

    def shutdown(self) -> None:
        for w in self.workers.values():
            w.shutdown()
        self.workers = {}


def _aggregate_params(term):
    return term.aggregate.params if term.aggregate.params is not None else REWARD_AGGREGATIONS.entry(
        term.aggregate.name).params()
