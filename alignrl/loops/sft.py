"""Supervised fine-tuning on the DeepSpeed learner group (Ray actors), with eval, checkpoints and export.

The driver tokenizes, batches and shuffles; learner actors take one DeepSpeed step per batch on
``sft_micro_loss``; the evaluation engine (HF or vLLM) in the driver receives the learner's full
weights through the same ``load_weights`` path that RL weight sync uses.
"""

from __future__ import annotations

import functools
from pathlib import Path

from alignrl.actors.cluster import ray_session
from alignrl.actors.learner import LearnerGroup
from alignrl.config import RunConfig, TrainConfig
from alignrl.data.collate import TokenizedExample, collate_sft, tokenize_sft
from alignrl.errors import UserError
from alignrl.loops.common import (
    BadSteps,
    RunData,
    clear_abandoned_writes,
    every,
    finish_run,
    learner_settings,
    load_run_data,
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
from alignrl.objectives.sft import SFTParams, sft_loss
from alignrl.ops import token_logprobs
from alignrl.tracking import Tracker
from alignrl.types import LossOut, TokenBatch


def sft_micro_loss(model, batch: TokenBatch, params: SFTParams) -> LossOut:
    """Forward the micro-batch and apply ``objectives.sft`` to the completion tokens."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    return sft_loss(token_logprobs(logits, batch.input_ids), batch.loss_mask, params)


def _tokenize_all(tokenizer, data: RunData, train: TrainConfig) -> list[TokenizedExample]:
    out = []
    for i, ex in enumerate(data.train):
        try:
            out.append(tokenize_sft(tokenizer, ex.prompt, ex.completion, train.max_length, train.truncation,
                                    train.max_prompt_length))
        except ValueError as err:
            raise UserError(f"data.train example {i}: {err}; raise train.max_length or change train.truncation"
                            ) from None
    return out


def _batches(examples: list[TokenizedExample], batch_size: int, pad_id: int, seed: int):
    """Endless shuffled batches (``shuffled_index_batches``), right-padded by ``collate_sft``."""
    for idx in shuffled_index_batches(len(examples), batch_size, seed):
        yield collate_sft([examples[i] for i in idx], pad_id)


def _eval_engine(cfg: RunConfig, model_dir: Path):
    from alignrl.rollout.factory import make_engine

    return make_engine(cfg.eval.engine, model_dir, seed=cfg.seed)


def run_sft(cfg: RunConfig, *, overwrite: bool = False, show_progress: bool = True, resume: bool = False,
            start_note: str | None = None) -> dict:
    """Run an SFT recipe end to end; returns the final eval metrics (empty without verifiable eval data).
    ``resume``: continue ``cfg.run_dir`` from its last checkpoint (weights, optimizer, LR schedule, data position)."""
    from alignrl.export import export_run
    from alignrl.models.loading import load_tokenizer

    seed_everything(cfg.seed)
    data = load_run_data(cfg)  # bad data fails here, before the run folder exists
    start = start_run(cfg, overwrite=overwrite, resume=resume)
    run_dir = start.run_dir
    model_dir = prepare_policy(cfg, run_dir, resume=resume)
    tokenizer = load_tokenizer(model_dir)
    batches = skip(_batches(_tokenize_all(tokenizer, data, cfg.train), cfg.train.batch_size,
                            tokenizer.pad_token_id, cfg.seed), start.step)
    loss_fn = functools.partial(sft_micro_loss, params=cfg.algorithm.params)
    tracker = Tracker(run_dir, cfg.train.steps, show_progress=show_progress, live_keys=("loss", "accuracy"),
                      resume_step=start.step if resume else None)
    if start_note:
        tracker.note(start.step, start_note)
    clear_abandoned_writes(start, tracker)
    bad_steps = BadSteps(cfg.train.max_bad_steps, tracker)
    final: dict = {}
    with ray_session(cfg.ray.address, cfg.ray.num_cpus):
        group = LearnerGroup(learner_settings(cfg, model_dir), cpus_per_worker=cfg.learner.cpus_per_worker)
        engine = _eval_engine(cfg, model_dir) if data.eval else None

        def evaluate_now(step: int, state: dict) -> dict:
            engine.load_weights(list(state.items()))
            result = run_eval(engine, data, cfg) or {}
            if result:
                tracker.log(step, {f"eval/{k}": v for k, v in result["metrics"].items()}
                            | {"accuracy": result["metrics"]["accuracy"]}, advance=False)
            return result

        try:
            if start.checkpoint is not None:
                restore_learner(group, start)
            elif engine is not None and cfg.train.eval_every:
                evaluate_now(0, group.full_state_dict())  # the starting point of the learning curve
            for step in range(start.step + 1, cfg.train.steps + 1):
                # 1. update
                train_and_log(group, next(batches), loss_fn, step, cfg.train.steps, cfg.train.log_every, tracker,
                              bad_steps)
                last = step == cfg.train.steps
                do_eval = engine is not None and (last or every(step, cfg.train.eval_every))
                do_checkpoint = last or every(step, cfg.train.checkpoint_every)
                state = group.full_state_dict() if do_eval or do_checkpoint else None  # one gather per step
                # 2. evaluate on held-out data with the learner's current weights
                if do_eval:
                    final = evaluate_now(step, state)
                # 3. checkpoint
                if do_checkpoint:
                    save_checkpoint(group, state, model_dir, run_dir, step)
            # 4. export: the last checkpoint's HF weights
            if cfg.export.enabled:
                export_run(run_dir, what="policy", checkpoint="latest", out_dir=run_dir / "export", overwrite=True)
        finally:
            tracker.close()
            if engine is not None:
                engine.close()
            group.shutdown()
    finish_run(run_dir, final, ("train/loss", "eval/accuracy", f"eval/pass@{cfg.eval.k}", "train/grad_norm"))
    return final.get("metrics", {})
