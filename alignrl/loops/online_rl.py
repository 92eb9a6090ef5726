"""Online RL (GRPO, Dr. GRPO, DAPO, GSPO, RLOO, REINFORCE++) on Ray: the single-controller driver.

One step (DESIGN.md "the data's way"): prompts -> RolloutWorkers sample G completions each with per-token
log-probs -> the reward terms score them (rewards/combine.py: the verifier, reward models on RewardWorkers,
functions) -> ScorerWorkers give fixed anchors' log-probs (EMA / Elastic Reset anchors are scored inside the
learner) -> advantages -> the LearnerGroup takes
``updates_per_step`` DeepSpeed steps on policy loss + anchor terms (moving anchors update there) ->
full weights go to the RolloutWorkers in whole-layer buckets -> metrics, eval, checkpoint.
Evaluation runs on the rollout workers, which hold the learner's current weights after each sync.
"""

from __future__ import annotations

import dataclasses
import functools
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from alignrl.actors.cluster import WORKER_RESTARTS, WorkerRestarted, ray_session
from alignrl.actors.learner import LearnerGroup
from alignrl.actors.rollout import RolloutGroup
from alignrl.actors.scorer import Scorer
from alignrl.advantages.base import AdvantageInputs, contiguous_groups
from alignrl.config import AnchorConfig, RewardConfig, RunConfig
from alignrl.data.sources import task_of
from alignrl.engine.deepspeed_learner import value_predictions
from alignrl.engine.moving_anchors import MovingAnchorSpec
from alignrl.errors import UserError
from alignrl.loops.common import (
    BadSteps,
    RunStart,
    clear_abandoned_writes,
    every,
    learner_settings,
    load_run_data,
    prepare_policy,
    restore_learner,
    run_eval,
    save_checkpoint,
    seed_everything,
    start_run,
    write_json,
)
from alignrl.objectives.anchor_term import CoefSchedule, adaptive_coef, anchor_token_terms, coef_at
from alignrl.objectives.online_rl import AnchorTerm, OnlineRLParams, advantage_params, online_rl_loss
from alignrl.objectives.taid import TAIDSchedule
from alignrl.objectives.tis import TISParams, tis_weights
from alignrl.objectives.value import ValueParams, value_loss
from alignrl.ops import masked_mean, token_logprobs
from alignrl.registry import ADVANTAGES, DIVERGENCES
from alignrl.rewards.combine import RewardSet, Scored
from alignrl.rollout.base import Completion, SamplingConfig
from alignrl.tasks.base import Example
from alignrl.tracking import Tracker, plot_metrics
from alignrl.types import LossOut, RolloutBatch, TokenBatch

MIB = 1 << 20


# ---- the learner-side loss (runs in LearnerWorker processes; module-level so it pickles) -----------------

def rl_micro_loss(model, micro: RolloutBatch, params: OnlineRLParams, anchors: tuple[AnchorTerm, ...],
                  on_policy: bool, sampled: bool = True, stale: bool = False) -> LossOut:
    """Forward one micro-batch and apply ``online_rl_loss``; also reports the rollout/learner mismatch.

    ``sampled`` False: the responses are dataset completions (distillation with λ < 1), which have no
    rollout log-probs: no TIS, no mismatch metric. ``stale``: the first update on a batch that older weights
    sampled (asynchronous rollout); with ``tis_cap`` it is decoupled PPO (Hilton et al. 2021, arXiv:2110.00641;
    AReaL, arXiv:2505.24298): π_old is the learner's current π_θ (the proximal policy, ratio 1 at the start)
    and the truncated weight min(π_θ/π_rollout, C) corrects for the sampling weights; without it, π_old is the
    rollout's log-probs and the clip alone bounds the step."""
    tokens = micro.tokens
    logits = model(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask).logits
    logp = token_logprobs(logits, tokens.input_ids)
    mask = tokens.loss_mask
    rows = dict(micro.rows)
    logp_rollout = rows["logp_rollout"]
    # One update per batch: π_old is the learner's own π_θ (ratio exactly 1); later updates use the
    # rollout engine's log-probs as π_old (what generated the samples).
    decoupled = stale and params.tis_cap is not None
    rows["logp_old"] = logp.detach() if on_policy or decoupled else logp_rollout
    if params.tis_cap is not None and sampled:
        rows["tis"], tis_metrics = tis_weights(logp.detach(), logp_rollout, mask,
                                               TISParams(cap=params.tis_cap, level=params.tis_level))
    else:
        tis_metrics = {}
    need_logits = params.entropy_coef > 0 or any(a.estimator in ("full", "topk") for a in anchors)
    out = online_rl_loss(logp, mask, rows, params, anchors, logits=logits if need_logits else None)
    if not sampled:
        return LossOut(out.loss, {**out.metrics, **tis_metrics})
    diff = (logp.detach() - logp_rollout).abs()
    diff = torch.where(mask, diff, torch.zeros_like(diff))
    # Same weights on both sides: the engines' numerical mismatch. Otherwise (overlap, later updates) the
    # difference is mostly the policy's own drift since sampling, reported under another name.
    name = "logp_mismatch" if on_policy else "logp_offpolicy_diff"
    metrics = {**out.metrics, **tis_metrics, f"{name}_mean": masked_mean(diff, mask), f"{name}_max": diff.max()}
    return LossOut(out.loss, metrics)


def critic_micro_loss(model, micro: RolloutBatch, params: ValueParams) -> LossOut:
    """The PPO critic's clipped value loss on one micro-batch (rows ``values_old``, ``returns``)."""
    values = value_predictions(model, micro.tokens)
    return value_loss(values, micro.rows["values_old"], micro.rows["returns"], micro.tokens.loss_mask, params)


# ---- batch building (driver) ----------------------------------------------------------------------------

def build_batch(prompt_ids: list[list[int]], completions: list[Completion], pad_id: int) -> RolloutBatch:
    """Right-padded prompt+completion rows; loss_mask and ``logp_rollout`` on completion tokens."""
    seqs = [list(p) + list(c.token_ids) for p, c in zip(prompt_ids, completions, strict=True)]
    width = max(len(s) for s in seqs)
    b = len(seqs)
    input_ids = torch.full((b, width), pad_id, dtype=torch.long)
    attention = torch.zeros((b, width), dtype=torch.long)
    loss_mask = torch.zeros((b, width), dtype=torch.bool)
    logp = torch.zeros((b, width), dtype=torch.float32)
    for row, (p, c, s) in enumerate(zip(prompt_ids, completions, seqs)):
        input_ids[row, : len(s)] = torch.tensor(s)
        attention[row, : len(s)] = 1
        loss_mask[row, len(p): len(s)] = True
        if c.logprobs is not None and c.token_ids:
            logp[row, len(p): len(s)] = torch.tensor(c.logprobs, dtype=torch.float32)
    return RolloutBatch(TokenBatch(input_ids, attention, loss_mask), {"logp_rollout": logp})


def overlong_shaping(lengths: torch.Tensor, max_new_tokens: int, buffer: int, penalty: float) -> torch.Tensor:
    """DAPO soft overlong punishment: 0 up to L_max − buffer, then −penalty·(ℓ − (L_max − buffer))/buffer."""
    if buffer <= 0:
        return torch.zeros_like(lengths, dtype=torch.float32)
    over = (lengths.float() - (max_new_tokens - buffer)).clamp(min=0.0)
    return -penalty * (over / buffer).clamp(max=1.0)


def keep_informative_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """DAPO dynamic sampling: (n_groups,) bool, True where a group's rewards are not all equal."""
    r = rewards.view(-1, group_size)
    return (r.max(dim=1).values - r.min(dim=1).values) > 0


# ---- anchors --------------------------------------------------------------------------------------------

def taid_schedules(plans: list[AnchorPlan], total_steps: int, saved: dict[str, dict]) -> dict[str, TAIDSchedule]:
    """One TAID schedule per anchor with ``taid:``, restored from a checkpoint's ``saved`` states if present."""
    out = {}
    for a in plans:
        if a.cfg.taid is not None:
            c = a.cfg.taid
            out[a.name] = TAIDSchedule(total_steps=total_steps, t_start=c.t_start, t_end=c.t_end, alpha=c.alpha,
                                       beta=c.beta, adaptive=c.adaptive)
            if a.name in saved:
                out[a.name].load_state_dict(saved[a.name])
    return out


@dataclass(frozen=True, slots=True)
class AnchorPlan:
    name: str
    cfg: AnchorConfig

    def coef(self, step: int, total: int, adaptive_now: dict[str, float]) -> float:
        c = self.cfg.coef
        if isinstance(c, CoefSchedule) and c.schedule == "adaptive":
            return adaptive_now.setdefault(self.name, c.start)
        return coef_at(step, c, total) if isinstance(c, CoefSchedule) else float(c)

    def divergence_params(self) -> Any:
        d = self.cfg.divergence
        return d.params if d.params is not None else DIVERGENCES.entry(d.name).params()


def moving_anchor_specs(plans: list[AnchorPlan]) -> list[MovingAnchorSpec]:
    from alignrl.anchors.elastic_reset import ElasticResetParams
    from alignrl.anchors.ema import EMAParams

    specs = []
    for a in plans:
        full = a.cfg.estimator == "full"
        if a.cfg.model == "ema":
            specs.append(MovingAnchorSpec(a.name, "ema", EMAParams(decay=a.cfg.decay), full))
        elif a.cfg.model == "elastic_reset":
            specs.append(MovingAnchorSpec(a.name, "elastic_reset",
                                          ElasticResetParams(period=a.cfg.reset_every, decay=a.cfg.decay), full))
    return specs


def check_anchor_tokenizers(cfg: RunConfig, model_dir: Path) -> None:
    """A teacher or soup ingredient must share the policy's tokenizer, else its log-probs score other tokens."""
    from alignrl.models.loading import check_same_tokenizer

    for i, a in enumerate(cfg.anchors):
        for d in [a.path] if a.path else list(a.paths):
            try:
                check_same_tokenizer(model_dir, d)
            except UserError as err:
                raise UserError(f"anchors[{i}] ({a.model}): {err}") from None


def start_scorers(plans: list[AnchorPlan], model_dir: Path, cfg: RunConfig) -> dict[str, Scorer]:
    """One ScorerWorker per fixed anchor (init, path, soup)."""
    scorers = {}
    for a in plans:
        if a.cfg.moving:
            continue
        dirs = {"init": [str(model_dir)], "path": [a.cfg.path], "soup": list(a.cfg.paths)}[a.cfg.model]
        scorers[a.name] = Scorer(a.name, dirs, weights=list(a.cfg.weights) if a.cfg.weights else None,
                                 micro_batch_size=cfg.learner.micro_batch_size, cpus=a.cfg.cpus)
    return scorers


class RemoteEngine:
    """The GenerationEngine interface over a RolloutGroup (evaluation uses the rollout workers)."""

    def __init__(self, group: RolloutGroup) -> None:
        self.group = group

    def generate(self, prompts: list[str], sampling: SamplingConfig) -> list[list[Completion]]:
        return self.group.generate(prompts, sampling)


class PromptStream:
    """Endless seeded shuffled batches of ``n`` prompts that counts what it gave (a resume skips as many)."""

    def __init__(self, examples: list[Example], n: int, seed: int, skip: int = 0) -> None:
        self._it = _prompt_stream(examples, n, seed)
        self.taken = 0
        for _ in range(skip):
            next(self)

    def __iter__(self):
        return self

    def __next__(self) -> list[Example]:
        self.taken += 1
        return next(self._it)


def _prompt_stream(examples: list[Example], n: int, seed: int):
    """Endless seeded shuffled batches of ``n`` prompts (a short tail is dropped each epoch)."""
    rng = random.Random(seed)
    order = list(range(len(examples)))
    if len(order) < n:
        raise UserError(f"data.train has {len(order)} prompts, fewer than the {n} one step needs "
                        "(train.batch_size / algorithm.group_size)")
    while True:
        rng.shuffle(order)
        for start in range(0, len(order) - n + 1, n):
            yield [examples[i] for i in order[start:start + n]]


def actor_cpu_asks(cfg: RunConfig) -> dict[str, float]:
    """The CPUs each kind of actor of one run requests from Ray (learner, rollout, critic, scorers)."""
    rc = cfg.rollout
    asks = {"learner": cfg.learner.workers * cfg.learner.cpus_per_worker, "rollout": rc.workers * rc.cpus_per_worker}
    if cfg.algorithm.params.advantage == "gae":
        asks["critic"] = cfg.learner.workers * cfg.learner.cpus_per_worker
    asks.update({f"scorer {n}": a.cpus for n, a in zip(cfg.anchor_names, cfg.anchors) if not a.moving})
    asks.update({f"reward {n}": r.cpus for n, r in zip(cfg.reward_names, cfg.rewards) if r.kind in ("model", "ensemble")})
    return asks


def check_local_cpus(cfg: RunConfig) -> None:
    """On the embedded Ray, fail at once (not after a scheduling timeout) when the actors ask for more CPUs
    than the machine has."""
    import ray

    asks = actor_cpu_asks(cfg)
    have = ray.cluster_resources().get("CPU", 0.0)
    if sum(asks.values()) > have + 1e-9:
        parts = ", ".join(f"{k} {v:g}" for k, v in asks.items())
        raise UserError(f"the actors ask for {sum(asks.values()):g} CPUs ({parts}) but the local Ray has {have:g}; "
                        "lower learner.cpus_per_worker, rollout.cpus_per_worker or anchors[].cpus (fractions are "
                        "fine), or raise ray.num_cpus")


# ---- the loop -------------------------------------------------------------------------------------------

def run_online_rl(cfg: RunConfig, *, overwrite: bool = False, show_progress: bool = True,
                  resume: bool = False, start_note: str | None = None) -> dict:
    """Run an online-RL recipe end to end; returns the final eval metrics.

    ``resume``: continue ``cfg.run_dir`` from its last checkpoint (weights, optimizer, scheduler, moving
    anchors, the prompt stream's position); sampling seeds derive from (seed, step), so the continued run's
    metrics equal an uninterrupted run's.
    """
    from alignrl.export import export_run
    from alignrl.models.loading import load_tokenizer

    seed_everything(cfg.seed)
    p: OnlineRLParams = cfg.algorithm.params
    data = load_run_data(cfg)
    task = cfg.data.train if task_of(cfg.data.train) else None  # the URI: its params may select a graded reward
    start = start_run(cfg, overwrite=overwrite, resume=resume)
    run_dir, checkpoint, trainer_state = start.run_dir, start.checkpoint, {"prompt_batches": 0, **start.state}
    model_dir = prepare_policy(cfg, run_dir, resume=resume)
    try:
        check_anchor_tokenizers(cfg, model_dir)
    except UserError:
        if not resume:
            shutil.rmtree(run_dir, ignore_errors=True)  # nothing half-written
        raise
    tokenizer = load_tokenizer(model_dir)
    group_size = p.group_size
    n_prompts = cfg.train.batch_size // group_size
    prompts_iter = PromptStream(data.train, n_prompts, cfg.seed, skip=trainer_state["prompt_batches"])
    first_step = trainer_state["step"] + 1
    plans = [AnchorPlan(n, a) for n, a in zip(cfg.anchor_names, cfg.anchors)]
    adv_entry = ADVANTAGES.entry(p.advantage)
    adv_params = advantage_params(p)
    rc = cfg.rollout
    sampling = dict(n=group_size, temperature=rc.temperature, top_p=rc.top_p, max_new_tokens=rc.max_new_tokens,
                    logprobs=True, teacher_in_loop=rc.skd_top_k > 0)
    tracker = Tracker(run_dir, cfg.train.steps, show_progress=show_progress,
                      live_keys=("reward", "accuracy") + tuple(f"kl/{a.name}" for a in plans[:1]),
                      resume_step=trainer_state["step"] if resume else None)
    bad_steps, skipped, notes = BadSteps(cfg.train.max_bad_steps, tracker), [], []
    if start_note:
        tracker.note(trainer_state["step"], start_note)
    clear_abandoned_writes(start, tracker)
    final: dict = {}
    with ray_session(cfg.ray.address, cfg.ray.num_cpus):
        if cfg.ray.address is None:
            check_local_cpus(cfg)
        colocated = rc.placement == "colocated"
        learner = LearnerGroup(
            learner_settings(cfg, model_dir), cpus_per_worker=cfg.learner.cpus_per_worker,
            moving_anchors=moving_anchor_specs(plans) or None,
            extra_bundle={"CPU": rc.cpus_per_worker} if colocated else None,
        )
        rollout = scorers = critic = rewarder = None
        prefetch = RolloutPrefetch(version=first_step - 1, in_order=rc.staleness_bound == 1) \
            if rc.staleness_bound else None
        try:
            if p.advantage == "gae":
                critic = LearnerGroup(
                    dataclasses.replace(learner_settings(cfg, model_dir), model_kind="value", lora=None,
                                        lr=p.critic_lr or cfg.learner.lr),
                    cpus_per_worker=cfg.learner.cpus_per_worker)
            if colocated and rc.workers > cfg.learner.workers:
                raise UserError(f"rollout.workers {rc.workers} > learner.workers {cfg.learner.workers}: colocated "
                                "placement puts one rollout worker beside each learner worker")
            engine_kw = {"kv_cache_gib": rc.kv_cache_gib} if rc.engine == "vllm" else {}
            if rc.skd_top_k:
                engine_kw |= {"skd_top_k": rc.skd_top_k,
                              "teacher_dir": next(a.path for a in cfg.anchors if a.model == "path")}
            rollout = RolloutGroup(
                rc.engine, str(model_dir), workers=rc.workers, seed=cfg.seed, cpus_per_worker=rc.cpus_per_worker,
                gpus_per_worker=rc.gpus_per_worker, engine_kw=engine_kw,
                bundles=[learner.bundle(i) for i in range(rc.workers)] if colocated else None,
            )
            scorers = start_scorers(plans, model_dir, cfg)
            rewarder = RewardSet(cfg.rewards or (RewardConfig(),), cfg.reward_names or ("verifier",), task, group_size,
                                 state=trainer_state.get("reward_stats"))
            engine = RemoteEngine(rollout)
            adaptive_now: dict[str, float] = dict(trainer_state.get("adaptive_coefs", {}))
            taid_now = taid_schedules(plans, cfg.train.steps, trainer_state.get("taid_schedules", {}))
            if checkpoint is not None:
                _restore(start, learner, rollout, cfg, critic)

            def evaluate_now(step: int) -> dict:
                result = run_eval(engine, data, cfg) or {}
                if result:
                    tracker.log(step, {f"eval/{k}": v for k, v in result["metrics"].items()}
                                | {"accuracy": result["metrics"]["accuracy"]}, advance=False)
                return result

            if data.eval and cfg.train.eval_every and not resume:
                final = evaluate_now(0)
            for step in range(first_step, cfg.train.steps + 1):
                last = step == cfg.train.steps
                evals = bool(data.eval) and (last or every(step, cfg.train.eval_every))
                saves = last or every(step, cfg.train.checkpoint_every)
                # The pipeline drains before eval/checkpoint steps: both then see the synced weights, and a
                # run resumed from a checkpoint starts exactly as the uninterrupted run went on.
                metrics = _one_step(step, cfg, p, plans, rewarder, prompts_iter, tokenizer, rollout, scorers, learner,
                                    adv_entry, adv_params, sampling, critic, adaptive_now, prefetch=prefetch,
                                    prefetch_until=_prefetch_until(step, cfg, bool(data.eval)), taid_now=taid_now,
                                    skipped=skipped, notes=notes)
                for note in notes:
                    tracker.note(step, f"step {step}: {note}")
                notes.clear()
                bad_steps.check(step, metrics, skipped.pop() if skipped else None)
                tracker.log(step, metrics | {"reward": metrics["train/reward_mean"]}
                            | {f"kl/{a.name}": metrics.get(f"train/anchor/{a.name}", 0.0) for a in plans[:1]})
                if evals:
                    final = evaluate_now(step)
                if saves:
                    save_checkpoint(learner, learner.full_state_dict(), model_dir, run_dir, step,
                                    extra={"prompt_batches": prompts_iter.taken, "adaptive_coefs": adaptive_now,
                                           "reward_stats": rewarder.state_dict(),
                                           "taid_schedules": {n: s.state_dict() for n, s in taid_now.items()}},
                                    anchors=learner.anchor_states(), others={"critic": critic} if critic else None)
            if cfg.export.enabled:
                export_run(run_dir, what="policy", checkpoint="latest", out_dir=run_dir / "export", overwrite=True)
        finally:
            tracker.close()
            if prefetch is not None:  # after an error: let an in-flight prefetch end before its actors go
                prefetch.close()
            for s in (scorers or {}).values():
                s.shutdown()
            if rewarder is not None:
                rewarder.shutdown()
            if rollout is not None:
                rollout.shutdown()
            if critic is not None:
                critic.shutdown()
            learner.shutdown()
    if final:
        write_json(run_dir / "eval.json", final)
    keys = ("train/reward_mean", "eval/accuracy", *(f"train/anchor/{a.name}" for a in plans), "train/response_length")
    plot_metrics(run_dir / "metrics.jsonl", run_dir / "learning_curves.png", keys)
    return final.get("metrics", {})


def _restore(start: RunStart, learner: LearnerGroup, rollout: RolloutGroup, cfg: RunConfig,
             critic: LearnerGroup | None) -> None:
    """Learner (and critic) state, moving anchors and the generators' weights from the resumed checkpoint."""
    updates = getattr(cfg.algorithm.params, "updates_per_step", 1)
    restore_learner(learner, start, updates_per_step=updates)
    if critic is not None:
        restore_learner(critic, start, name="critic", updates_per_step=updates)
    rollout.load_buckets(learner.weight_bucket_refs(int(cfg.rollout.sync_bucket_mb * MIB)))


def _rollout(prompts: list[Example], step: int, attempt: int, cfg: RunConfig, rewarder: RewardSet, tokenizer,
             rollout: RolloutGroup, sampling: dict) -> tuple[RolloutBatch, Scored, list[Completion]]:
    seed = cfg.seed * 1_000_003 + step * 101 + attempt
    per_prompt = rollout.generate([x.prompt for x in prompts], SamplingConfig(seed=seed, **sampling))
    completions = [c for group in per_prompt for c in group]
    g = sampling["n"]
    scored = rewarder.score([x.prompt for x in prompts for _ in range(g)], [c.text for c in completions],
                            [x.answer for x in prompts for _ in range(g)])
    prompt_ids = [tokenizer(x.prompt)["input_ids"] for x in prompts for _ in range(g)]
    return build_batch(prompt_ids, completions, tokenizer.pad_token_id), scored, completions


def _once(fn):
    """``fn`` (or nothing, for None) callable any number of times, run at most once."""
    done = []

    def call():
        if fn is not None and not done:
            done.append(True)
            fn()
    return call


def _score_async(scorer, tokens: TokenBatch, topk: int | None):
    return scorer.logprobs_async(tokens) if topk is None else scorer.topk_logprobs_async(tokens, topk)


def _anchor_rows(scorers: dict, parts: list[tuple[dict, int]], topk: dict[str, int]) -> dict[str, torch.Tensor]:
    """The scorers' results of consecutive row parts ((refs by scorer, the part's width) each), joined: a part
    narrower than the widest is zero-padded on the right (past its rows' ends, where every loss is masked)."""
    width = max(w for _, w in parts)
    pieces: dict[str, list[torch.Tensor]] = {}
    for refs, _ in parts:
        for name, s in scorers.items():
            got = s.get(refs[name], "scoring")
            named = {f"anchor_logp/{name}": got} if name not in topk else {
                f"anchor_logp/{name}": got[0], f"anchor_topk_logp/{name}": got[1],
                f"anchor_topk_index/{name}": got[2]}
            for key, t in named.items():
                pad = [0, 0] * (t.ndim - 2) + [0, width - t.shape[1]]
                pieces.setdefault(key, []).append(torch.nn.functional.pad(t, pad))
    return {key: torch.cat(ts) for key, ts in pieces.items()}


def _rollout_streamed(prompts: list[Example], step: int, cfg: RunConfig, rewarder: RewardSet, tokenizer,
                      rollout: RolloutGroup, sampling: dict, scorers: dict, topk: dict[str, int], on_generated):
    """``_rollout`` with scoring streamed: each rollout worker's part goes to the scorers and reward models the
    moment it is generated, while the other workers still generate. The batch is built as ``_rollout`` builds
    it (the same rows, order and seeds). Returns (batch, scored, completions, anchor rows, time the last part
    was generated)."""
    seed = cfg.seed * 1_000_003 + step * 101  # attempt 0, as _rollout
    g = sampling["n"]
    pending = {ref: (start, stop) for start, stop, ref in
               rollout.generate_parts([x.prompt for x in prompts], SamplingConfig(seed=seed, **sampling))}
    groups: dict[int, list] = {}
    parts: dict[int, tuple[dict, int]] = {}
    reward_refs: dict[int, dict] = {}
    try:
        while pending:
            (start, stop), part_groups = rollout.next_part(pending)
            groups[start] = part_groups
            completions = [c for group in part_groups for c in group]
            part_prompts = [x.prompt for x in prompts[start:stop] for _ in range(g)]
            part = build_batch([tokenizer(t)["input_ids"] for t in part_prompts], completions, tokenizer.pad_token_id)
            parts[start] = ({n: _score_async(s, part.tokens, topk.get(n)) for n, s in scorers.items()},
                            part.tokens.input_ids.shape[1])
            reward_refs[start] = rewarder.score_models_async(part_prompts, [c.text for c in completions])
    finally:
        on_generated()
    t_gen = time.perf_counter()
    order = sorted(groups)
    completions = [c for start in order for group in groups[start] for c in group]
    prompt_texts = [x.prompt for x in prompts for _ in range(g)]
    model_parts = {n: [reward_refs[start][n] for start in order] for n in rewarder.workers}
    scored = rewarder.score(prompt_texts, [c.text for c in completions], [x.answer for x in prompts for _ in range(g)],
                            model_parts=model_parts)
    batch = build_batch([tokenizer(t)["input_ids"] for t in prompt_texts], completions, tokenizer.pad_token_id)
    anchor_rows = _anchor_rows(scorers, [parts[start] for start in order], topk) if scorers else {}
    return batch, scored, completions, anchor_rows, t_gen


@dataclass(frozen=True, slots=True)
class Collected:
    """One step's scored rollouts: what the learner needs besides the anchors' coefficients."""

    batch: RolloutBatch
    rewards: torch.Tensor
    correct: torch.Tensor
    completions: list[Completion]
    kept_frac: float
    anchor_rows: dict[str, torch.Tensor]
    generate_s: float
    score_s: float
    off_policy: bool
    from_student: bool = True
    reward_metrics: dict[str, float] = field(default_factory=dict)


def _collect(step, cfg, p, rewarder, prompts, prompts_iter, tokenizer, rollout, scorers, sampling, *,
             off_policy: bool = False, on_generated=None) -> Collected:
    """Sample, verify (+ overlong shaping, dynamic-sampling refills) and score one step's batch.

    ``on_generated`` is called once the rollout workers are free again (before scoring), also on error.
    """
    t_start = time.perf_counter()
    g = p.group_size
    from_student = student_step(cfg.seed, step, getattr(p, "lmbda", 1.0))
    topk = {n: a.topk for n, a in zip(cfg.anchor_names, cfg.anchors) if a.estimator == "topk"}
    streamed = None
    on_generated = _once(on_generated)
    try:
        if from_student and cfg.rollout.stream_scoring and not p.dynamic_sampling:
            streamed = _rollout_streamed(prompts, step, cfg, rewarder, tokenizer, rollout, sampling, scorers, topk,
                                         on_generated)  # calls it as soon as the last part is generated
            batch, scored, completions, anchor_rows, t_gen = streamed
        elif from_student:
            batch, scored, completions = _rollout(prompts, step, 0, cfg, rewarder, tokenizer, rollout, sampling)
        else:
            batch, scored, completions = _gold(prompts, g, rewarder, tokenizer)
        rewards, correct = scored.rewards, scored.correct
        lengths = torch.tensor([len(c.token_ids) for c in completions])
        rewards = rewards + overlong_shaping(lengths, cfg.rollout.max_new_tokens, p.overlong_buffer,
                                             p.overlong_penalty)
        kept_frac = 1.0
        if p.dynamic_sampling:  # refill with fresh prompts (up to 3 more rounds), then top up with the rest
            keep = keep_informative_groups(rewards, g)
            kept_frac = float(keep.float().mean())
            parts = [(batch, rewards, correct, keep)]
            for attempt in range(1, 4):
                if sum(int(k.sum()) for *_, k in parts) >= len(prompts):
                    break
                b2, s2, c2 = _rollout(next(prompts_iter), step, attempt, cfg, rewarder, tokenizer, rollout, sampling)
                l2 = torch.tensor([len(c.token_ids) for c in c2])
                shaped = s2.rewards + overlong_shaping(l2, cfg.rollout.max_new_tokens, p.overlong_buffer,
                                                       p.overlong_penalty)
                parts.append((b2, shaped, s2.correct, keep_informative_groups(shaped, g)))
            batch, rewards, correct = _select_groups(parts, len(prompts), g, tokenizer.pad_token_id)
    finally:
        on_generated()
    if streamed is None:
        t_gen = time.perf_counter()
        refs = {name: _score_async(s, batch.tokens, topk.get(name)) for name, s in scorers.items()}
        anchor_rows = _anchor_rows(scorers, [(refs, batch.tokens.input_ids.shape[1])], topk)
    return Collected(batch, rewards, correct, completions, kept_frac, anchor_rows, t_gen - t_start,
                     time.perf_counter() - t_gen, off_policy and from_student, from_student, scored.metrics)


def _skd_metrics(completions: list[Completion]) -> dict[str, float]:
    """Speculative KD: the fraction of generated tokens the teacher replaced (absent for other rollouts)."""
    replaced = [c.extra["skd_replaced"] for c in completions if "skd_replaced" in c.extra]
    if not replaced:
        return {}
    return {"train/skd_replaced_frac": sum(replaced) / max(1, sum(len(c.token_ids) for c in completions))}


def student_step(seed: int, step: int, lmbda: float) -> bool:
    """GKD's λ: whether ``step`` trains on student samples (seeded per step, so a resume agrees)."""
    return lmbda >= 1.0 or random.Random(seed * 7_919 + step).random() < lmbda


def _gold(prompts: list[Example], g: int, rewarder: RewardSet, tokenizer) -> tuple[RolloutBatch, Scored,
                                                                                   list[Completion]]:
    """The dataset's gold completions (+ EOS) as a batch, each prompt ``g`` times (distillation with λ < 1)."""
    completions = []
    for x in prompts:
        ids = tuple(tokenizer(x.completion, add_special_tokens=False)["input_ids"]) + (tokenizer.eos_token_id,)
        completions += [Completion(text=x.completion, token_ids=ids, logprobs=None, finished=True)] * g
    scored = rewarder.score([x.prompt for x in prompts for _ in range(g)], [c.text for c in completions],
                            [x.answer for x in prompts for _ in range(g)])
    prompt_ids = [tokenizer(x.prompt)["input_ids"] for x in prompts for _ in range(g)]
    return build_batch(prompt_ids, completions, tokenizer.pad_token_id), scored, completions


class RolloutPrefetch:
    """Asynchronous rollout (rollout.max_staleness = k ≥ 1; overlap: k = 1): the batches of up to k future steps
    are collected, in step order, by one driver thread while the learner trains.

    The rollout workers hold one set of weights at a time: a generation has them to itself from its start until it
    has left the workers, and so does a weight sync, so a sync never lands mid-generation. ``version`` counts the
    syncs (the policy version the workers hold); each batch records the version it was generated with, and a batch
    trained at step t that version v sampled is t − 1 − v steps stale (0: on-policy). Queueing at most k steps
    ahead bounds that by k.

    ``in_order`` (k = 1): a sync waits until every queued batch is generated, so a batch is always sampled by the
    weights current when it was queued: step t + 1's batch, queued at step t, is exactly 1 stale, and a run is
    reproducible (and resumable) bit for bit. Otherwise (k ≥ 2) a waiting sync goes before the next queued
    generation: the generator runs ahead as the learner allows, staleness is 0 to k depending on timing, and runs
    are not bit-reproducible (as in AReaL or verl's fully asynchronous mode).
    """

    def __init__(self, version: int = 0, in_order: bool = True) -> None:
        import threading
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alignrl-rollout-prefetch")
        self._pending: dict[int, Any] = {}
        self._turn = threading.Condition()
        self._busy = False        # a generation or a sync is on the rollout workers
        self._syncs_waiting = 0   # a waiting sync goes before the next generation: fresher weights, less staleness
        self._ungenerated = 0     # queued generations that have not left the workers yet
        self._in_order = in_order
        self._prompts: dict[int, list] = {}
        self.version = version

    @property
    def last_started(self) -> int | None:
        return max(self._pending) if self._pending else None

    def start(self, step: int, collect) -> None:
        """Queue ``collect(on_generated=...)`` for ``step``; it returns a Collected (or anything, in tests)."""
        def run():
            with self._turn:
                self._turn.wait_for(lambda: not self._busy and (self._in_order or not self._syncs_waiting))
                self._busy, version = True, self.version
            held = [True]

            def release() -> None:
                if held[0]:
                    held[0] = False
                    with self._turn:
                        self._busy = False
                        self._ungenerated -= 1
                        self._turn.notify_all()
            try:
                return collect(on_generated=release), version
            finally:
                release()

        with self._turn:
            self._ungenerated += 1
        self._pending[step] = self._pool.submit(run)

    def sync(self, fn):
        """Run the weight sync ``fn()`` once no generation is on the workers (blocking later ones meanwhile)."""
        out = self.exclusive(fn)
        self.version += 1
        return out

    def exclusive(self, fn):
        """``fn()`` with the rollout workers to itself, as a sync has them (a redo after a worker restart)."""
        with self._turn:
            self._syncs_waiting += 1
            self._turn.wait_for(lambda: not self._busy and not (self._in_order and self._ungenerated))
            self._syncs_waiting -= 1
            self._busy = True
        try:
            return fn()
        finally:
            with self._turn:
                self._busy = False
                self._turn.notify_all()

    def draw(self, step: int, prompts_iter) -> list:
        """The next prompts for queued ``step`` (drawn in the prefetch thread, in step order), kept until its batch
        is taken: a batch lost with a worker is redone on the same prompts."""
        self._prompts[step] = next(prompts_iter)
        return self._prompts[step]

    def take(self, step: int):
        """(the batch collected for ``step``, the policy version that generated it), re-raising its error, or None
        when none was started."""
        future = self._pending.pop(step, None)
        try:
            return None if future is None else future.result()
        finally:
            if future is not None and future.exception() is None:
                self._prompts.pop(step, None)

    def prompts_of(self, step: int) -> list:
        """The prompts queued ``step`` drew (after its batch failed)."""
        return self._prompts.pop(step)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _drains(step: int, cfg: RunConfig, has_eval: bool) -> bool:
    """Steps after which the rollout pipeline is empty: evaluations, checkpoints and the last step see the synced
    weights, and a run resumed from a checkpoint goes on exactly as the uninterrupted one did."""
    return step >= cfg.train.steps or (has_eval and every(step, cfg.train.eval_every)) or \
        every(step, cfg.train.checkpoint_every)


def _prefetch_until(step: int, cfg: RunConfig, has_eval: bool) -> int:
    """The last step whose batch may be queued while ``step`` trains: at most rollout.max_staleness ahead, and
    never past the next draining step (its sync must come before the next batch is sampled)."""
    until = step
    while until < step + cfg.rollout.staleness_bound and not _drains(until, cfg, has_eval):
        until += 1
    return until


def nonfinite_reason(rewards: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor) -> str | None:
    """Why a batch cannot train (NaN/inf rewards or advantages on response tokens, naming the first samples), or
    None."""
    for what, bad in (("rewards", ~torch.isfinite(rewards)),
                      ("advantages", (~torch.isfinite(advantages) & mask).any(-1) if advantages.ndim > 1
                       else ~torch.isfinite(advantages))):
        rows = bad.nonzero().flatten().tolist()
        if rows:
            shown = ", ".join(map(str, rows[:8])) + (", ..." if len(rows) > 8 else "")
            return f"{what} were NaN/inf for {len(rows)} of {len(bad)} samples (rows {shown})"
    return None


def _anchor_terms(step: int, cfg: RunConfig, plans: list[AnchorPlan], adaptive_now: dict | None,
                  taid_now: dict | None) -> tuple[dict[str, float], list[AnchorTerm], dict[str, float]]:
    """This step's anchor coefficients, the loss-placed anchors as the learner's AnchorTerms, and their metrics."""
    coefs, loss_terms, metrics = {}, [], {}
    for a in plans:
        coef = a.coef(step - 1, cfg.train.steps, adaptive_now if adaptive_now is not None else {})
        coefs[a.name] = coef
        metrics[f"train/coef/{a.name}"] = coef
        if a.cfg.placement != "reward":
            taid_t = taid_now[a.name].t if taid_now and a.name in taid_now else None
            if taid_t is not None:
                metrics[f"train/taid_t/{a.name}"] = taid_t
            loss_terms.append(AnchorTerm(a.name, a.cfg.divergence.name, a.cfg.estimator, coef,
                                         a.divergence_params(), taid_t))
    return coefs, loss_terms, metrics


def with_advantages(batch: RolloutBatch, rewards: torch.Tensor, correct: torch.Tensor,
                    anchor_rows: dict[str, torch.Tensor], plans: list[AnchorPlan], coefs: dict[str, float],
                    adv_entry, adv_params, group_size: int, values: torch.Tensor | None = None):
    """``batch`` with its advantages and anchor rows (reward-gated masks added), the advantage output, and the
    metrics of anchors placed in the reward (−coef·D per token, gated, added to the token rewards)."""
    mask = batch.tokens.loss_mask
    anchor_rows = dict(anchor_rows)
    token_rewards = torch.zeros_like(batch.rows["logp_rollout"])
    metrics: dict[str, float] = {}
    for a in plans:
        if a.cfg.mask != "all":
            from alignrl.anchors.masks import reward_gated_mask

            when = "zero" if a.cfg.mask == "reward_zero" else "nonpositive"
            anchor_rows[f"anchor_mask/{a.name}"] = reward_gated_mask(correct, mask, when).float()
        if a.cfg.placement == "reward":  # fixed anchors only (checked at recipe load)
            value, _ = anchor_token_terms(batch.rows["logp_rollout"], anchor_rows[f"anchor_logp/{a.name}"],
                                          divergence=a.cfg.divergence.name, estimator=a.cfg.estimator,
                                          params=a.divergence_params())
            gate = anchor_rows.get(f"anchor_mask/{a.name}", mask.float())
            token_rewards = token_rewards - coefs[a.name] * torch.where(mask, value * gate, torch.zeros_like(value))
            metrics[f"train/anchor/{a.name}"] = float(masked_mean(value, mask))
    adv = adv_entry.fn(AdvantageInputs(rewards=rewards, mask=mask, token_rewards=token_rewards, values=values,
                                       group_index=contiguous_groups(len(rewards), group_size)), adv_params)
    return batch.with_rows(advantages=adv.adv.float(), **anchor_rows), adv, metrics


def _one_step(step, cfg, p, plans, rewarder, prompts_iter, tokenizer, rollout, scorers, learner,
              adv_entry, adv_params, sampling, critic=None, adaptive_now=None, prefetch: RolloutPrefetch | None = None,
              prefetch_until: int = 0, taid_now: dict[str, TAIDSchedule] | None = None,
              skipped: list[str] | None = None, notes: list[str] | None = None) -> dict[str, float]:
    """One step; with ``prefetch``, the batches of steps up to ``prefetch_until`` are queued before training.

    A batch with NaN/inf rewards or advantages is not trained on (its reason is appended to ``skipped``); the
    weight sync still runs, so the rollout's bookkeeping of weight versions stays one per step. A rollout, scorer
    or reward worker that dies and is restarted by Ray is survived: the workers get the current weights and the
    interrupted batch (a queued one: on its own prompts) or sync is redone (noted in ``notes``). With
    rollout.stream_learner the learner trains inside the collection (``loops/streamed_step``)."""
    t_start = time.perf_counter()
    g = p.group_size
    notes = [] if notes is None else notes
    restarts_before = len(notes)

    def resync():
        rollout.load_buckets(learner.weight_bucket_refs(int(cfg.rollout.sync_bucket_mb * MIB)))

    coefs, loss_terms, metrics = _anchor_terms(step, cfg, plans, adaptive_now, taid_now)
    learner_metrics: list[dict[str, float]] = []  # filled here by a streamed step (trained as its parts came)
    taken, prompts = None, None
    if prefetch is not None:
        try:
            taken = prefetch.take(step)
        except WorkerRestarted as err:  # the batch queued for this step was lost with a worker: redone below
            notes.append(f"{err.note()}; the rollout workers got the current weights and step {step}'s queued batch "
                         "was redone")
            prompts = prefetch.prompts_of(step)
            prefetch.exclusive(resync)
    if taken is None:
        prompts = next(prompts_iter) if prompts is None else prompts
        if cfg.rollout.stream_learner and prefetch is None:
            from alignrl.loops import streamed_step

            def collect():
                return streamed_step.collect_and_train(step, cfg, p, plans, coefs, loss_terms, rewarder, prompts,
                                                       tokenizer, rollout, scorers, learner, adv_entry, adv_params,
                                                       sampling)
        else:
            def collect():
                return _collect(step, cfg, p, rewarder, prompts, prompts_iter, tokenizer, rollout, scorers,
                                sampling), []
        got, learner_metrics = _redo_after_restart(
            collect if prefetch is None else lambda: prefetch.exclusive(collect),
            resync if prefetch is None else lambda: prefetch.exclusive(resync), notes, f"step {step}'s batch")
        staleness = 0
    else:
        got, version = taken
        staleness = step - 1 - version
        got = dataclasses.replace(got, off_policy=got.from_student and staleness > 0)
    t_got = time.perf_counter()
    if prefetch is not None:
        for ahead in range(max(step, prefetch.last_started or 0) + 1, prefetch_until + 1):
            # the prompts are drawn in the prefetch thread, in step order, as the refills of dynamic sampling are
            prefetch.start(ahead, lambda on_generated, s=ahead: _collect(
                s, cfg, p, rewarder, prefetch.draw(s, prompts_iter), prompts_iter, tokenizer, rollout, scorers,
                sampling, on_generated=on_generated))
    batch, rewards, correct, completions = got.batch, got.rewards, got.correct, got.completions
    tokens = batch.tokens
    mask = tokens.loss_mask
    values = critic.forward_values(tokens) if critic is not None else None
    batch, adv, anchor_metrics = with_advantages(batch, rewards, correct, got.anchor_rows, plans, coefs, adv_entry,
                                                 adv_params, g, values)
    metrics.update(anchor_metrics)
    reason = nonfinite_reason(rewards, adv.adv, mask)
    if reason is not None:
        metrics["train/skipped"] = 1.0
        if skipped is not None:
            skipped.append(reason)
    if critic is not None and reason is None:  # the critic learns from this batch's returns as the policy steps
        critic_batch = batch.with_rows(values_old=values, returns=adv.returns.float())
        critic_fn = functools.partial(critic_micro_loss, params=ValueParams(clip=p.value_clip, loss_agg=p.loss_agg))
        for key, value in critic.train_step(critic_batch, critic_fn).items():
            metrics[f"critic/{key}"] = value

    updates = p.updates_per_step
    size = len(batch) // updates
    for u in range(updates if reason is None and not learner_metrics else 0):
        # π_old is the learner's own π_θ only for the first update on a batch the current weights sampled.
        on_policy = u == 0 and not got.off_policy
        loss_fn = functools.partial(rl_micro_loss, params=p, anchors=tuple(loss_terms), on_policy=on_policy,
                                    sampled=got.from_student, stale=u == 0 and got.off_policy)
        learner_metrics.append(learner.train_step(batch.slice(u * size, (u + 1) * size), loss_fn))
    t_learn = time.perf_counter()

    bucket_refs = learner.weight_bucket_refs(int(cfg.rollout.sync_bucket_mb * MIB))
    t_gathered = t_free = time.perf_counter()
    if prefetch is not None:  # waits for a generation on the workers to end (t_free is set inside)
        marks = {}

        def load():
            marks["free"] = time.perf_counter()
            return rollout.load_buckets(bucket_refs)
        sync = _redo_after_restart(lambda: prefetch.sync(load), lambda: None, notes, f"step {step}'s weight sync")
        t_free = marks["free"]
    else:
        sync = _redo_after_restart(lambda: rollout.load_buckets(bucket_refs), lambda: None, notes,
                                   f"step {step}'s weight sync")
    t_sync = time.perf_counter()

    for key in dict.fromkeys(k for m in learner_metrics for k in m):
        seen = [m[key] for m in learner_metrics if key in m]
        metrics[f"train/{key}"] = sum(seen) / len(seen)
    for a in plans:  # adaptive coefficients follow this step's measured divergence
        c = a.cfg.coef
        if isinstance(c, CoefSchedule) and c.schedule == "adaptive" and f"train/anchor/{a.name}" in metrics:
            adaptive_now[a.name] = adaptive_coef(adaptive_now[a.name], metrics[f"train/anchor/{a.name}"], c.target,
                                                 c.horizon, len(batch))
        if taid_now and a.name in taid_now and f"train/anchor/{a.name}" in metrics:  # TAID's t follows its loss
            taid_now[a.name].update(metrics[f"train/anchor/{a.name}"], step - 1)
    lengths = mask.sum(1).float()
    metrics.update(got.reward_metrics)
    metrics.update({
        "train/reward_mean": float(rewards.mean()),
        "train/accuracy": float(correct.mean()),
        "train/response_length": float(lengths.mean()),
        "train/truncated_frac": float(sum(not c.finished for c in completions) / len(completions)),
        "train/advantage_abs_mean": float(masked_mean(adv.adv.abs(), mask)),
        "train/kept_group_frac": got.kept_frac,
        "train/off_policy": float(got.off_policy),
        "train/staleness": float(staleness),
        "train/from_student": float(got.from_student),
        **_skd_metrics(got.completions),
        "time/generate_s": got.generate_s, "time/score_s": got.score_s, "time/wait_rollout_s": t_got - t_start,
        "time/learner_s": t_learn - t_got, "time/wait_generate_s": t_free - t_gathered,
        "time/sync_s": (t_gathered - t_learn) + (t_sync - t_free),
        "time/step_s": t_sync - t_start,
        "train/worker_restarts": float(len(notes) - restarts_before),
        **{k: float(v) for k, v in sync.items()},
    })
    return metrics


def _redo_after_restart(fn, recover, notes: list[str], what: str):
    """``fn()``, redone after ``recover()`` when a worker it used died and Ray restarted it (at most
    WORKER_RESTARTS times, Ray's own bound per worker); each redo is noted."""
    for attempt in range(WORKER_RESTARTS + 1):
        try:
            return fn()
        except WorkerRestarted as err:
            if attempt == WORKER_RESTARTS:
                raise
            notes.append(f"{err.note()}; the rollout workers got the current weights and {what} was redone")
            recover()
    raise AssertionError("unreachable")


def _select_groups(parts, n_groups: int, g: int, pad_id: int) -> tuple[RolloutBatch, torch.Tensor, torch.Tensor]:
    """The first ``n_groups`` informative groups over all rounds, topped up with uninformative ones."""
    chosen: list[tuple[int, int]] = []
    for informative in (True, False):
        for pi, (_, _, _, keep) in enumerate(parts):
            for gi in range(len(keep)):
                if bool(keep[gi]) == informative and len(chosen) < n_groups:
                    chosen.append((pi, gi))
    chosen.sort()
    rows = [(pi, gi * g + j) for pi, gi in chosen for j in range(g)]
    width = max(parts[pi][0].tokens.input_ids.shape[1] for pi, _ in rows)

    def pad(t: torch.Tensor, value) -> torch.Tensor:
        return torch.nn.functional.pad(t, (0, width - t.shape[-1]), value=value)

    ids, att, lm, lp, rw, cr = [], [], [], [], [], []
    for pi, r in rows:
        b, rewards, correct, _ = parts[pi]
        ids.append(pad(b.tokens.input_ids[r], pad_id))
        att.append(pad(b.tokens.attention_mask[r], 0))
        lm.append(pad(b.tokens.loss_mask[r], False))
        lp.append(pad(b.rows["logp_rollout"][r], 0.0))
        rw.append(rewards[r])
        cr.append(correct[r])
    batch = RolloutBatch(TokenBatch(torch.stack(ids), torch.stack(att), torch.stack(lm)), {"logp_rollout": torch.stack(lp)})
    return batch, torch.stack(rw), torch.stack(cr)
