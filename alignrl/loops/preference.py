"""Offline preference optimization (the DPO family) on the DeepSpeed learner group, with the reference hosted
beside the policy on each learner rank (``engine/moving_anchors``; sharded under ZeRO-3).

Each step takes ``train.batch_size`` pairs, chosen and rejected rows interleaved so no micro-batch splits a
pair. The learner adds the reference's per-token log-probs (and, for TDPO, its logits) to every micro-batch;
``preference_micro_loss`` sums both over the response tokens and applies ``objectives.preference_job``. After
each optimizer step the reference follows its rule: frozen (never moves), ema, or tr_dpo (soft sync every τ
steps). Held-out greedy accuracy on ``data.eval`` (a tasks:// URI) uses the same evaluation engine as SFT.
``reference: model`` makes another model (a teacher, for DPKD; or a soup of several) the fixed reference, scored
once per round of pairs by a ScorerWorker. With a cached reference (offline frozen, or a model) each pair is one
shared-prompt row (``data/shared_prompt``). Losses that need inputs an offline job does not have (a previous
iterate, rewards, K samples) are refused at recipe load.

Iterative / online DPO (``online: true``, DNO / INPO style): each of ``rounds`` rounds samples K answers per
prompt with the rollout workers (holding the policy as the round began), scores them with the recipe's
``rewards`` (verifier, reward models, ensembles), pairs each prompt's best and worst answer when their rewards
differ by more than ``pair_margin``, and trains train.steps steps on those pairs; ``reference: previous_round``
makes the round's start the reference.
"""

from __future__ import annotations

import dataclasses
import functools
import random

import torch

from alignrl.actors.cluster import ray_session
from alignrl.actors.learner import LearnerGroup
from alignrl.config import RunConfig
from alignrl.data.shared_prompt import collate_shared_prompt
from alignrl.data.sources import PreferenceExample, load_examples, load_preference_examples, task_of
from alignrl.engine.moving_anchors import MovingAnchorSpec
from alignrl.errors import UserError
from alignrl.loops.common import (
    BadSteps,
    RunData,
    clear_abandoned_writes,
    every,
    finish_run,
    learner_settings,
    prepare_policy,
    restore_learner,
    run_eval,
    save_checkpoint,
    seed_everything,
    shuffled_index_batches,
    skip,
    start_run,
    train_and_log,
)
from alignrl.loops.reward_model import Pair, collate_pairs, tokenize_pairs
from alignrl.objectives.preference_base import PreferenceInputs
from alignrl.objectives.preference_job import TOKEN_LEVEL, PreferenceJobParams, preference_job_loss
from alignrl.ops import token_logprobs
from alignrl.tracking import Tracker
from alignrl.types import LossOut, RolloutBatch

REF = "ref"


def loss_names(p: PreferenceJobParams) -> list[str]:
    return [p.loss.name] + [e.loss.name for e in p.extra_losses]


def reference_spec(p: PreferenceJobParams, steps_per_round: int = 1) -> MovingAnchorSpec:
    """The reference as a learner-hosted anchor: frozen = an EMA with decay 1 (a copy that never moves);
    previous_round = TR-DPO's hard sync (α = 1) every ``steps_per_round`` steps."""
    from alignrl.anchors.ema import EMAParams
    from alignrl.anchors.tr_dpo import TRDPOParams

    full = any(n in TOKEN_LEVEL for n in loss_names(p))
    if p.reference == "tr_dpo":
        return MovingAnchorSpec(REF, "tr_dpo", TRDPOParams(alpha=p.ref_alpha, sync_steps=p.ref_sync_steps), full)
    if p.reference == "previous_round":
        return MovingAnchorSpec(REF, "tr_dpo", TRDPOParams(alpha=1.0, sync_steps=steps_per_round), full)
    return MovingAnchorSpec(REF, "ema", EMAParams(decay=1.0 if p.reference == "frozen" else p.ref_decay), full)


def preference_micro_loss(model, micro: RolloutBatch, params: PreferenceJobParams) -> LossOut:
    """Sequence sums of log π_θ and log π_ref over each response, per pair (even rows chosen, odd rejected, or one
    shared-prompt row per pair)."""
    if "segment" in micro.rows:
        return _shared_prompt_micro_loss(model, micro, params)
    t = micro.tokens
    logits = model(input_ids=t.input_ids, attention_mask=t.attention_mask).logits
    mask = t.loss_mask
    logp = token_logprobs(logits, t.input_ids).float() * mask
    ref_logits = micro.rows.get(f"anchor_logits/{REF}")  # TDPO: the learner sends the reference's logits instead
    if "ref_logp_sum" in micro.rows:  # a frozen reference's sums, computed once before training
        ref_sums = micro.rows["ref_logp_sum"].float()
    else:
        ref = token_logprobs(ref_logits, t.input_ids) if ref_logits is not None else micro.rows[f"anchor_logp/{REF}"]
        ref_sums = (ref.float() * mask).sum(1)
    sums, lens = logp.sum(1), mask.sum(1).float()
    token = {}
    if ref_logits is not None:  # KL(π_ref ‖ π_θ) of the distribution each response token was drawn from
        from alignrl.objectives.tdpo import token_kl

        kl = token_kl(logits[:, :-1].float(), ref_logits[:, :-1].float().detach())
        kl = torch.nn.functional.pad(kl, (1, 0))
        token = {"kl_chosen": kl[0::2], "mask_chosen": mask[0::2], "kl_rejected": kl[1::2], "mask_rejected": mask[1::2]}
    x = PreferenceInputs(logp_chosen=sums[0::2], logp_rejected=sums[1::2], logp_ref_chosen=ref_sums[0::2],
                         logp_ref_rejected=ref_sums[1::2], len_chosen=lens[0::2], len_rejected=lens[1::2],
                         logp_teacher_chosen=ref_sums[0::2], logp_teacher_rejected=ref_sums[1::2], **token)
    nll = (-sums[0::2] / lens[0::2]).mean()
    out = preference_job_loss(x, params, nll)
    metrics = {**out.metrics, "logp_chosen": sums[0::2].mean().detach(), "logp_rejected": sums[1::2].mean().detach(),
               "kl_ref": (sums - ref_sums).mean().detach()}
    return LossOut(out.loss, metrics)


def _shared_prompt_micro_loss(model, micro: RolloutBatch, params: PreferenceJobParams) -> LossOut:
    """``preference_micro_loss`` on shared-prompt rows, against the cached reference sums ``ref_pair_sums``."""
    from alignrl.data.shared_prompt import CHOSEN, REJECTED, shared_prompt_token_logps

    _, sums = shared_prompt_token_logps(model, micro)
    ref = micro.rows["ref_pair_sums"].float()
    segment, mask = micro.rows["segment"], micro.tokens.loss_mask
    lens = torch.stack([(mask & (segment == CHOSEN)).sum(1), (mask & (segment == REJECTED)).sum(1)], 1).float()
    x = PreferenceInputs(logp_chosen=sums[:, 0], logp_rejected=sums[:, 1], logp_ref_chosen=ref[:, 0],
                         logp_ref_rejected=ref[:, 1], len_chosen=lens[:, 0], len_rejected=lens[:, 1],
                         logp_teacher_chosen=ref[:, 0], logp_teacher_rejected=ref[:, 1])
    out = preference_job_loss(x, params, (-sums[:, 0] / lens[:, 0]).mean())
    metrics = {**out.metrics, "logp_chosen": sums[:, 0].mean().detach(), "logp_rejected": sums[:, 1].mean().detach(),
               "kl_ref": (sums - ref).mean().detach()}
    return LossOut(out.loss, metrics)


def best_worst_pairs(prompts: list[str], completions: list[str], rewards: torch.Tensor, k: int,
                     margin: float) -> list[PreferenceExample]:
    """Per prompt (k consecutive samples): its highest- and lowest-rewarded answers as (chosen, rejected), kept
    when their rewards differ by more than ``margin`` (the first sample wins ties; DNO/INPO-style pairing)."""
    out = []
    grouped = rewards.view(-1, k)
    for i, row in enumerate(grouped):
        best, worst = int(row.argmax()), int(row.argmin())
        if float(row[best] - row[worst]) > margin:
            out.append(PreferenceExample(prompt=prompts[i * k], chosen=completions[i * k + best],
                                         rejected=completions[i * k + worst]))
    return out


def _batches(pairs: list[Pair], batch_size: int, pad_id: int, seed: int, ref_sums: torch.Tensor | None = None,
             shared: bool = False):
    """Endless seeded batches of pairs; ``ref_sums`` (2·len(pairs),): cached reference sums, interleaved like rows;
    ``shared``: one shared-prompt row per pair (then ``ref_sums`` is required)."""
    if len(pairs) < batch_size:  # a round that kept few pairs: repeat them to fill a batch
        reps = -(-batch_size // len(pairs))
        pairs = pairs * reps
        ref_sums = ref_sums.repeat(reps) if ref_sums is not None else None
    for idx in shuffled_index_batches(len(pairs), batch_size, seed):
        if shared:
            batch = collate_shared_prompt([pairs[i] for i in idx], pad_id)
            yield batch.with_rows(ref_pair_sums=ref_sums.view(-1, 2)[torch.as_tensor(idx)])
            continue
        rows = {}
        if ref_sums is not None:
            rows["ref_logp_sum"] = torch.stack([ref_sums[2 * i + j] for i in idx for j in (0, 1)])
        yield RolloutBatch(collate_pairs([pairs[i] for i in idx], pad_id), rows)


def cached_reference(p: PreferenceJobParams) -> bool:
    """A reference that does not move during a round of pairs, with sequence-level losses, is needed only as each
    response's log-prob sum: computed once per round of pairs and kept with the data (no reference copy in memory,
    no reference forward per step; TRL's precompute_ref_log_probs). That is an offline frozen start, or a fixed
    other model (``reference: model``, a teacher or a soup)."""
    fixed = (p.reference == "frozen" and not p.online) or p.reference == "model"
    return fixed and not any(n in TOKEN_LEVEL for n in loss_names(p))


def scored_sums(scorer, pairs: list[Pair], pad_id: int, chunk: int = 256) -> torch.Tensor:
    """(2·P,) log-prob sums of chosen_0, rejected_0, ... under a ScorerWorker's model (a teacher or a soup)."""
    out = []
    for i in range(0, len(pairs), chunk):
        batch = collate_pairs(pairs[i:i + chunk], pad_id)
        logp = scorer.get(scorer.logprobs_async(batch), "reference log-probs")
        out.append((logp * batch.loss_mask).sum(1))
    return torch.cat(out) if out else torch.zeros(0)


def reference_sums(group: LearnerGroup, pairs: list[Pair], pad_id: int, chunk: int = 256,
                   anchor: str | None = None, shared: bool = False) -> torch.Tensor:
    """(2·P,) log-prob sums of chosen_0, rejected_0, chosen_1, ... under the group's current weights (before the
    first step: the start), or under its hosted ``anchor``; ``shared``: scored as shared-prompt rows."""
    if shared:
        return torch.cat([group.forward_pair_logp_sums(collate_shared_prompt(pairs[i:i + chunk], pad_id)).reshape(-1)
                          for i in range(0, len(pairs), chunk)])
    return torch.cat([group.forward_logp_sums(collate_pairs(pairs[i:i + chunk], pad_id), anchor)
                      for i in range(0, len(pairs), chunk)])


def evaluate_pairs(group: LearnerGroup, pairs: list[Pair], pad_id: int, p: PreferenceJobParams,
                   cached_ref: torch.Tensor | None, shared: bool = False) -> dict[str, float]:
    """Held-out pairs: the share with ρ(y_w) > ρ(y_l) (ρ = log π_θ − log π_ref summed over the response), the mean
    margin, the chosen/rejected log-probs and, for sequence-level losses, the job's loss."""
    policy = reference_sums(group, pairs, pad_id, shared=shared)
    ref = cached_ref if cached_ref is not None else reference_sums(group, pairs, pad_id, anchor=REF)
    rho = policy - ref
    margin = rho[0::2] - rho[1::2]
    out = {"pair_accuracy": float((margin > 0).float().mean()), "pair_margin": float(margin.mean()),
           "logp_chosen": float(policy[0::2].mean()), "logp_rejected": float(policy[1::2].mean()),
           "pairs": float(len(pairs))}
    if not any(n in TOKEN_LEVEL for n in loss_names(p)):
        lens = torch.tensor([float(len(side.ids) - side.n_prompt) for pair in pairs for side in pair])
        x = PreferenceInputs(logp_chosen=policy[0::2], logp_rejected=policy[1::2], logp_ref_chosen=ref[0::2],
                             logp_ref_rejected=ref[1::2], len_chosen=lens[0::2], len_rejected=lens[1::2],
                             logp_teacher_chosen=ref[0::2], logp_teacher_rejected=ref[1::2])
        out["loss"] = float(preference_job_loss(x, p, (-policy[0::2] / lens[0::2]).mean()).loss)
    return out


def run_preference(cfg: RunConfig, *, overwrite: bool = False, show_progress: bool = True, resume: bool = False,
                   start_note: str | None = None) -> dict:
    """Run a preference recipe end to end (offline pairs, or ``online`` rounds of sampled pairs); returns the final
    held-out metrics (empty without verifiable eval data). ``resume``: continue ``cfg.run_dir`` from its last
    checkpoint (weights, optimizer, LR schedule, reference, data position; online: the round's pairs and the
    reward normalizers)."""
    from alignrl.export import export_run
    from alignrl.models.loading import load_tokenizer

    seed_everything(cfg.seed)
    p: PreferenceJobParams = cfg.algorithm.params
    steps, rounds = cfg.train.steps, p.rounds
    if p.online:
        prompts = load_examples(cfg.data.train, key="data.train")
        if len(prompts) < p.prompts_per_round:
            raise UserError(f"data.train: {len(prompts)} prompts, fewer than algorithm.prompts_per_round="
                            f"{p.prompts_per_round}")
        pairs = []
    else:
        prompts = []
        pairs = load_preference_examples(cfg.data.train, key="data.train")
        if len(pairs) < cfg.train.batch_size:
            raise UserError(f"data.train: {len(pairs)} pairs, fewer than train.batch_size={cfg.train.batch_size}")
    evals = load_examples(cfg.data.eval, key="data.eval")[: cfg.eval.n] if cfg.data.eval else []
    eval_pairs = load_preference_examples(cfg.eval.pairs, key="eval.pairs")[: cfg.eval.n] if cfg.eval.pairs else []
    data = RunData(prompts, evals, task_of(cfg.data.eval) if cfg.data.eval else None)
    start = start_run(cfg, overwrite=overwrite, resume=resume, total_steps=rounds * steps)
    run_dir = start.run_dir
    model_dir = prepare_policy(cfg, run_dir, resume=resume)
    tokenizer = load_tokenizer(model_dir)
    fit = (cfg.train.truncation, cfg.train.max_prompt_length)
    eval_tok = tokenize_pairs(tokenizer, eval_pairs, cfg.train.max_length, "eval.pairs", *fit)
    settings = learner_settings(cfg, model_dir)
    shared = p.shared_prompt and cached_reference(p)
    rows_per_pair = 1 if shared else 2
    settings = dataclasses.replace(settings, batch_size=rows_per_pair * settings.batch_size,
                                   micro_batch_size=rows_per_pair * settings.micro_batch_size,
                                   total_steps=rounds * steps)
    loss_fn = functools.partial(preference_micro_loss, params=p)
    tracker = Tracker(run_dir, rounds * steps, show_progress=show_progress, live_keys=("loss", "accuracy"),
                      resume_step=start.step if resume else None)
    if start_note:
        tracker.note(start.step, start_note)
    clear_abandoned_writes(start, tracker)
    bad_steps = BadSteps(cfg.train.max_bad_steps, tracker)
    final: dict = {}
    if p.reference == "model":
        from alignrl.models.loading import check_same_tokenizer

        for i, path in enumerate(p.reference_paths):
            try:
                check_same_tokenizer(model_dir, path)
            except UserError as err:
                raise UserError(f"algorithm.reference_paths[{i}] ({path}): {err}") from None
    with ray_session(cfg.ray.address, cfg.ray.num_cpus):
        cached, cached_sums = cached_reference(p), None
        group = LearnerGroup(settings, cpus_per_worker=cfg.learner.cpus_per_worker,
                             moving_anchors=None if cached else [reference_spec(p, steps)])
        rollout = rewarder = engine = scorer = None
        try:
            if p.reference == "model":  # scores while the learner waits: no CPU of its own
                from alignrl.actors.scorer import Scorer

                scorer = Scorer("reference", list(p.reference_paths), cpus=0.0, micro_batch_size=2 * cfg.learner.
                                micro_batch_size, weights=list(p.reference_weights) if p.reference_weights else None)

            def fixed_reference_sums(tokenized: list[Pair]) -> torch.Tensor:
                if scorer is not None:
                    return scored_sums(scorer, tokenized, tokenizer.pad_token_id)
                return reference_sums(group, tokenized, tokenizer.pad_token_id, shared=shared)

            if p.online:
                rollout, rewarder = _start_sampling(cfg, model_dir, start.state.get("reward_stats"))
                from alignrl.loops.online_rl import RemoteEngine

                engine = RemoteEngine(rollout) if data.eval and data.task else None
            elif data.eval and data.task:
                from alignrl.loops.sft import _eval_engine

                engine = _eval_engine(cfg, model_dir)

            eval_ref = fixed_reference_sums(eval_tok) if eval_tok and cached else None

            def evaluate_now(step: int, state: dict | None) -> dict:
                result = {}
                if engine is not None:
                    if rollout is None:
                        engine.load_weights(list(state.items()))
                    result = run_eval(engine, data, cfg) or {}
                if eval_tok:
                    pair_metrics = evaluate_pairs(group, eval_tok, tokenizer.pad_token_id, p, eval_ref, shared)
                    result = {**result, "metrics": {**result.get("metrics", {}), **pair_metrics}}
                if result:
                    tracker.log(step, {f"eval/{k}": v for k, v in result["metrics"].items()}
                                | {"accuracy": result["metrics"].get("accuracy", result["metrics"].get("pair_accuracy"))},
                                advance=False)
                return result

            evaluates = engine is not None or bool(eval_tok)
            if evaluates and cfg.train.eval_every and start.checkpoint is None:
                final = evaluate_now(0, group.full_state_dict() if engine is not None and rollout is None else None)
            first_round, done_in_round = divmod(start.step, steps)
            for r in range(first_round, rounds):
                resumed_here = r == first_round and start.checkpoint is not None
                if p.online and resumed_here and done_in_round:  # the checkpoint was taken inside this round
                    pairs = [PreferenceExample(**x) for x in start.state["round_pairs"]]
                elif p.online:
                    if resumed_here:  # the round starts from the checkpoint's weights, as it did before
                        restore_learner(group, start)
                        rollout.load_buckets(group.weight_bucket_refs(int(cfg.rollout.sync_bucket_mb * 2**20)))
                    pairs = _sample_round(r, cfg, p, prompts, rollout, rewarder, tracker, r * steps)
                tokenized = tokenize_pairs(tokenizer, pairs, cfg.train.max_length, "data.train", *fit)
                if cached and (cached_sums is None or p.online):  # frozen: before the first step, the policy still
                    cached_sums = fixed_reference_sums(tokenized)  # is the reference; a model: each round's pairs
                if scorer is not None and not p.online:
                    scorer.shutdown()  # every sum is in hand: free its memory for training
                    scorer = None
                batches = _batches(tokenized, cfg.train.batch_size, tokenizer.pad_token_id, cfg.seed + r, cached_sums,
                                   shared)
                if resumed_here and not (p.online and not done_in_round):
                    # after a frozen reference's sums, taken from the starting weights (as the first run took them)
                    restore_learner(group, start)
                    if rollout is not None:
                        rollout.load_buckets(group.weight_bucket_refs(int(cfg.rollout.sync_bucket_mb * 2**20)))
                    batches = skip(batches, done_in_round)
                for step in range(r * steps + done_in_round * resumed_here + 1, (r + 1) * steps + 1):
                    train_and_log(group, next(batches), loss_fn, step, rounds * steps, cfg.train.log_every, tracker,
                                  bad_steps)
                    last = step == rounds * steps
                    round_end = step == (r + 1) * steps
                    do_eval = evaluates and (last or every(step, cfg.train.eval_every) or (p.online and round_end))
                    do_checkpoint = last or every(step, cfg.train.checkpoint_every)
                    if rollout is not None and (do_eval or round_end):  # the next round samples from these weights
                        rollout.load_buckets(group.weight_bucket_refs(int(cfg.rollout.sync_bucket_mb * 2**20)))
                    needs_state = do_checkpoint or (do_eval and engine is not None and rollout is None)
                    state = group.full_state_dict() if needs_state else None
                    if do_eval:
                        final = evaluate_now(step, state)
                    if do_checkpoint:
                        extra = {} if not p.online else {
                            "reward_stats": rewarder.state_dict(),
                            "round_pairs": [] if round_end else [dataclasses.asdict(x) for x in pairs]}
                        save_checkpoint(group, state, model_dir, run_dir, step, extra=extra,
                                        anchors=group.anchor_states())
            if cfg.export.enabled:
                export_run(run_dir, what="policy", checkpoint="latest", out_dir=run_dir / "export", overwrite=True)
        finally:
            tracker.close()
            if scorer is not None:
                scorer.shutdown()
            if engine is not None and rollout is None:
                engine.close()
            if rewarder is not None:
                rewarder.shutdown()
            if rollout is not None:
                rollout.shutdown()
            group.shutdown()
    finish_run(run_dir, final, ("train/loss", "eval/accuracy", "train/reward_accuracy", "round/pairs"))
    return final.get("metrics", {})


def _start_sampling(cfg: RunConfig, model_dir, reward_stats: dict | None = None):
    """The rollout workers and the reward terms of online rounds (``reward_stats``: a checkpoint's normalizers)."""
    from alignrl.actors.rollout import RolloutGroup
    from alignrl.config import RewardConfig
    from alignrl.rewards.combine import RewardSet

    rc = cfg.rollout
    rollout = RolloutGroup(rc.engine, str(model_dir), workers=rc.workers, seed=cfg.seed, cpus_per_worker=rc.cpus_per_worker,
                           gpus_per_worker=rc.gpus_per_worker,
                           engine_kw={"kv_cache_gib": rc.kv_cache_gib} if rc.engine == "vllm" else {})
    try:
        rewarder = RewardSet(cfg.rewards or (RewardConfig(),), cfg.reward_names or ("verifier",), cfg.data.train,
                             cfg.algorithm.params.samples_per_prompt, state=reward_stats)
    except BaseException:
        rollout.shutdown()
        raise
    return rollout, rewarder


def _sample_round(r: int, cfg: RunConfig, p: PreferenceJobParams, prompts, rollout, rewarder, tracker,
                  step: int) -> list[PreferenceExample]:
    """One round's pairs: K samples for prompts_per_round seeded prompts, scored, best vs worst per prompt."""
    from alignrl.rollout.base import SamplingConfig

    rng = random.Random(cfg.seed * 7_919 + r)
    chosen = rng.sample(prompts, p.prompts_per_round)
    k, rc = p.samples_per_prompt, cfg.rollout
    groups = rollout.generate([x.prompt for x in chosen], SamplingConfig(
        n=k, temperature=rc.temperature, top_p=rc.top_p, max_new_tokens=rc.max_new_tokens, seed=cfg.seed * 1_000_003 + r))
    texts = [c.text for g in groups for c in g]
    flat_prompts = [x.prompt for x in chosen for _ in range(k)]
    scored = rewarder.score(flat_prompts, texts, [x.answer for x in chosen for _ in range(k)])
    pairs = best_worst_pairs(flat_prompts, texts, scored.rewards, k, p.pair_margin)
    tracker.log(step, {"round/index": float(r), "round/pairs": float(len(pairs)),
                       "round/reward_mean": float(scored.rewards.mean()), "round/accuracy": float(scored.correct.mean()),
                       **{k_.replace("train/", "round/"): v for k_, v in scored.metrics.items()}}, advance=False)
    if not pairs:
        raise UserError(f"round {r}: all {k} samples of every prompt got the same reward, so no pair was formed; raise "
                        "algorithm.samples_per_prompt or rollout.temperature, or lower algorithm.pair_margin")
    return pairs
