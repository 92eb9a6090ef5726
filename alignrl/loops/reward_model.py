"""Bradley-Terry reward-model training on the DeepSpeed learner group, with held-out pairwise accuracy and export.

The model is the policy's backbone with a scalar head (``AutoModelForSequenceClassification``, num_labels 1,
read at the last non-pad token), built once into ``runs/NAME/init_rm/`` with its head seeded by ``seed``.
Each step takes ``train.batch_size`` pairs (``learner.micro_batch_size`` pairs per forward), chosen and rejected
rows interleaved so a micro-batch never splits a pair; the loss is ``objectives.reward_model.bradley_terry_loss``.
Held-out pairs (``data.eval``) give eval/accuracy (share with r_chosen > r_rejected), eval/margin and eval/loss.
The export is an HF sequence-classification folder: ``AutoModelForSequenceClassification.from_pretrained`` and
our reward workers load it.
Data: TRL's preference format (prompt/chosen/rejected, plain or conversational: conversations go through the
tokenizer's chat template), or ``prefs://`` synthetic pairs labelled by a task's gold reward.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from alignrl.actors.cluster import ray_session
from alignrl.actors.learner import LearnerGroup
from alignrl.config import RunConfig
from alignrl.data.collate import TokenizedExample, collate_sft, tokenize_scored
from alignrl.data.sources import PreferenceExample, load_preference_examples
from alignrl.errors import UserError
from alignrl.io import atomic_dir
from alignrl.loops.common import (
    BadSteps,
    clear_abandoned_writes,
    create_run_dir,
    every,
    finish_run,
    has_checkpoint,
    learner_settings,
    prepare_policy,
    restore_learner,
    save_checkpoint,
    seed_everything,
    shuffled_index_batches,
    skip,
    start_run,
    train_and_log,
    write_json,
)
from alignrl.objectives.reward_model import BradleyTerryParams, bradley_terry_loss, lora_nuclear_diversity
from alignrl.tracking import Tracker
from alignrl.types import LossOut, TokenBatch

Pair = tuple[TokenizedExample, TokenizedExample]


def build_reward_init(backbone_dir: Path, out_dir: Path, seed: int) -> Path:
    """An HF sequence-classification folder: the backbone's body and a scalar head initialised with ``seed``."""
    import transformers
    from transformers import AutoModelForSequenceClassification

    from alignrl.models.loading import load_tokenizer

    tokenizer = load_tokenizer(backbone_dir)
    torch.manual_seed(seed)
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # "score.weight newly initialized" is the point here
    try:
        model = AutoModelForSequenceClassification.from_pretrained(backbone_dir, num_labels=1, dtype=torch.float32,
                                                                   use_safetensors=True)
    finally:
        transformers.logging.set_verbosity(verbosity)
    model.config.pad_token_id = tokenizer.pad_token_id
    with atomic_dir(out_dir, overwrite=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return out_dir


def tokenize_side(tokenizer, ex: PreferenceExample, side: str, max_length: int, truncation: str = "prompt_left",
                  max_prompt_length: int | None = None) -> TokenizedExample:
    """prompt + chosen (or rejected) as the reward model scores it (``data.collate.tokenize_scored``)."""
    return tokenize_scored(tokenizer, ex.prompt, getattr(ex, side), max_length, prompt_messages=ex.prompt_messages,
                           completion_messages=getattr(ex, f"{side}_messages"), truncation=truncation,
                           max_prompt_length=max_prompt_length)


def tokenize_pairs(tokenizer, pairs: list[PreferenceExample], max_length: int, key: str,
                   truncation: str = "prompt_left", max_prompt_length: int | None = None) -> list[Pair]:
    """Each pair's chosen and rejected side tokenized and fitted to ``max_length`` (``data.collate.truncate``)."""
    out = []
    for i, ex in enumerate(pairs):
        try:
            out.append(tuple(tokenize_side(tokenizer, ex, side, max_length, truncation, max_prompt_length)
                             for side in ("chosen", "rejected")))
        except ValueError as err:
            raise UserError(f"{key} pair {i}: {err}; raise train.max_length or change train.truncation") from None
    return out


def collate_pairs(pairs: list[Pair], pad_id: int) -> TokenBatch:
    """Rows chosen_0, rejected_0, chosen_1, ...: any even-sized slice holds whole pairs."""
    return collate_sft([side for pair in pairs for side in pair], pad_id)


def bt_micro_loss(model, micro: TokenBatch, params: BradleyTerryParams) -> LossOut:
    """Score the interleaved rows and apply the Bradley-Terry loss to (even, odd) rows."""
    scores = model(input_ids=micro.input_ids, attention_mask=micro.attention_mask).logits[:, 0].float()
    return bradley_terry_loss(scores[0::2], scores[1::2], params)


def _batches(pairs: list[Pair], batch_size: int, pad_id: int, seed: int):
    for idx in shuffled_index_batches(len(pairs), batch_size, seed):
        yield collate_pairs([pairs[i] for i in idx], pad_id)


def evaluate_pairs(group: LearnerGroup, pairs: list[Pair], pad_id: int, params: BradleyTerryParams,
                   chunk: int = 256, member: int | None = None) -> dict[str, float]:
    """Held-out pairwise accuracy, mean margin and Bradley-Terry loss of the group's current reward model (or of
    LoRA-ensemble member ``member``)."""
    scores = torch.cat([group.forward_scores(collate_pairs(pairs[i:i + chunk], pad_id), member)
                        for i in range(0, len(pairs), chunk)])
    out = bradley_terry_loss(scores[0::2], scores[1::2], params)
    return {"loss": float(out.loss), **{k: float(v) for k, v in out.metrics.items()}, "n": float(len(pairs))}


def bt_ensemble_micro_loss(model, micro: TokenBatch, params: BradleyTerryParams) -> LossOut:
    """A LoRA reward ensemble's step: Σ_k Bradley-Terry loss of member k − λ_div · Σ_layers ‖[Â_1; …; Â_K]‖_*
    (UP-RLHF, arXiv:2401.00243; objectives/reward_model.py)."""
    module = model.module if hasattr(model, "module") else model
    total, metrics = 0.0, {}
    for k in range(module.members):
        module.set_member(k)
        scores = model(input_ids=micro.input_ids, attention_mask=micro.attention_mask).logits[:, 0].float()
        out = bradley_terry_loss(scores[0::2], scores[1::2], params)
        total = total + out.loss
        metrics[f"member{k}/accuracy"] = out.metrics["accuracy"]
        metrics[f"member{k}/margin"] = out.metrics["margin"]
    diversity = sum(lora_nuclear_diversity(group) for group in module.lora_a_groups())
    metrics["nuclear_norm"] = diversity.detach()
    metrics["accuracy"] = sum(metrics[f"member{k}/accuracy"] for k in range(module.members)) / module.members
    return LossOut(total - params.diversity * diversity, metrics)


def _save_members(group: LearnerGroup, rm_dir: Path, run_dir: Path, step: int) -> Path:
    """``checkpoints/step_N/{deepspeed, member<k>/ (HF sequence classifiers), trainer_state.json}``, atomically."""
    from alignrl.models.export import save_hf_folder

    final = run_dir / "checkpoints" / f"step_{step:06d}"
    with atomic_dir(final, overwrite=True) as tmp:
        group.save_engine_state(str(tmp / "deepspeed"), tag=f"step_{step}")
        for k, state in enumerate(group.member_state_dicts()):
            save_hf_folder(state, rm_dir, tmp / f"member{k}")
        write_json(tmp / "trainer_state.json", {"step": step})
    return final


def export_folder(source: Path, out_dir: Path) -> Path:
    """Copy an HF folder to ``out_dir`` atomically."""
    import shutil

    with atomic_dir(out_dir, overwrite=True) as tmp:
        for f in source.iterdir():
            shutil.copy2(f, tmp / f.name)
    return out_dir


def run_reward_model(cfg: RunConfig, *, overwrite: bool = False, show_progress: bool = True, resume: bool = False,
                     start_note: str | None = None) -> dict:
    """Train a Bradley-Terry reward model from a recipe (``members`` K > 1: an ensemble in ``runs/NAME/member<k>/``,
    K LoRA members on one backbone with ``learner.lora``, else K full models with seeds s..s+K−1); returns the
    final held-out metrics (with K members: each one's and their mean). ``resume``: continue from the last
    checkpoint (an ensemble of full models: finished members are kept, the interrupted one resumes)."""
    members = cfg.algorithm.params.members
    if members == 1 or cfg.learner.lora is not None:
        return _train_one(cfg, overwrite=overwrite, show_progress=show_progress, resume=resume, start_note=start_note)
    run_dir = cfg.run_dir if resume else create_run_dir(cfg, overwrite=overwrite)
    results = {}
    for k in range(members):
        sub = dataclasses.replace(cfg, name=f"member{k}", output_dir=str(run_dir), seed=cfg.seed + k)
        if resume and _finished(sub):
            results[f"member{k}"] = _final_metrics(sub.run_dir)
            continue
        again = resume and has_checkpoint(sub.run_dir)
        results[f"member{k}"] = _train_one(sub, overwrite=True, show_progress=show_progress, resume=again,
                                           start_note=start_note)
        start_note = None  # said once, by the member that went on after it
    summary = {"members": results, "exports": [str(run_dir / f"member{k}" / "export") for k in range(members)]}
    if all(results.values()):
        summary["mean"] = {key: sum(r[key] for r in results.values()) / members for key in next(iter(results.values()))}
    write_json(run_dir / "ensemble.json", summary)
    return summary.get("mean", {})


def _finished(cfg: RunConfig) -> bool:
    """A member run that reached train.steps (and wrote its export, when the recipe exports)."""
    from alignrl.export import find_checkpoint

    if not has_checkpoint(cfg.run_dir) or find_checkpoint(cfg.run_dir).name != f"step_{cfg.train.steps:06d}":
        return False
    return not cfg.export.enabled or (cfg.run_dir / "export" / "config.json").is_file()


def _final_metrics(run_dir: Path) -> dict:
    """A finished run's final held-out metrics (its eval.json), {} without held-out data."""
    import json

    path = run_dir / "eval.json"
    return json.loads(path.read_text())["metrics"] if path.is_file() else {}


def _train_one(cfg: RunConfig, *, overwrite: bool, show_progress: bool, resume: bool = False,
               start_note: str | None = None) -> dict:
    import functools

    from alignrl.export import export_run
    from alignrl.models.loading import load_tokenizer

    seed_everything(cfg.seed)
    train_pairs = load_preference_examples(cfg.data.train, key="data.train")
    eval_pairs = load_preference_examples(cfg.data.eval, key="data.eval")[: cfg.eval.n] if cfg.data.eval else []
    if len(train_pairs) < cfg.train.batch_size:
        raise UserError(f"data.train: {len(train_pairs)} pairs, fewer than train.batch_size={cfg.train.batch_size}")
    start = start_run(cfg, overwrite=overwrite, resume=resume)
    run_dir = start.run_dir
    rm_dir = run_dir / "init_rm"
    if not (resume and (rm_dir / "config.json").is_file()):
        build_reward_init(prepare_policy(cfg, run_dir, resume=resume), rm_dir, cfg.seed)
    tokenizer = load_tokenizer(rm_dir)
    pad = tokenizer.pad_token_id
    fit = (cfg.train.truncation, cfg.train.max_prompt_length)
    train_tok = tokenize_pairs(tokenizer, train_pairs, cfg.train.max_length, "data.train", *fit)
    eval_tok = tokenize_pairs(tokenizer, eval_pairs, cfg.train.max_length, "data.eval", *fit)
    batches = skip(_batches(train_tok, cfg.train.batch_size, pad, cfg.seed), start.step)
    params: BradleyTerryParams = cfg.algorithm.params
    lora_members = params.members if cfg.learner.lora is not None else 0  # 0: a full model, no LoRA
    settings = learner_settings(cfg, rm_dir)
    settings = dataclasses.replace(settings, batch_size=2 * settings.batch_size,
                                   micro_batch_size=2 * settings.micro_batch_size, model_kind="reward",
                                   members=lora_members)
    loss_fn = functools.partial(bt_ensemble_micro_loss if lora_members else bt_micro_loss, params=params)
    tracker = Tracker(run_dir, cfg.train.steps, show_progress=show_progress, live_keys=("loss", "accuracy"),
                      resume_step=start.step if resume else None)
    if start_note:
        tracker.note(start.step, start_note)
    clear_abandoned_writes(start, tracker)
    bad_steps = BadSteps(cfg.train.max_bad_steps, tracker)
    final: dict = {}
    with ray_session(cfg.ray.address, cfg.ray.num_cpus):
        group = LearnerGroup(settings, cpus_per_worker=cfg.learner.cpus_per_worker)

        def evaluate_now(step: int) -> dict:
            if lora_members <= 1:
                result = evaluate_pairs(group, eval_tok, pad, params, member=0 if lora_members else None)
            else:  # each member, then their mean
                per = [evaluate_pairs(group, eval_tok, pad, params, member=k) for k in range(lora_members)]
                result = {key: sum(r[key] for r in per) / lora_members for key in per[0]}
                result |= {f"member{k}/{key}": r[key] for k, r in enumerate(per) for key in ("accuracy", "margin")}
            tracker.log(step, {f"eval/{k}": v for k, v in result.items()} | {"accuracy": result["accuracy"]},
                        advance=False)
            return result

        try:
            if start.checkpoint is not None:
                restore_learner(group, start)
            elif eval_tok and cfg.train.eval_every:
                evaluate_now(0)
            for step in range(start.step + 1, cfg.train.steps + 1):
                train_and_log(group, next(batches), loss_fn, step, cfg.train.steps, cfg.train.log_every, tracker,
                              bad_steps)
                last = step == cfg.train.steps
                if eval_tok and (last or every(step, cfg.train.eval_every)):
                    final = evaluate_now(step)
                if lora_members and (last or every(step, cfg.train.checkpoint_every)):
                    _save_members(group, rm_dir, run_dir, step)
                elif last or every(step, cfg.train.checkpoint_every):
                    save_checkpoint(group, group.full_state_dict(), rm_dir, run_dir, step)
            if cfg.export.enabled and lora_members:
                latest = max((run_dir / "checkpoints").glob("step_*"))
                for k in range(lora_members):  # one LoRA model: runs/NAME/export, like a full one
                    export_folder(latest / f"member{k}",
                                  run_dir / (f"member{k}/export" if lora_members > 1 else "export"))
            elif cfg.export.enabled:
                export_run(run_dir, what="policy", checkpoint="latest", out_dir=run_dir / "export", overwrite=True)
        finally:
            tracker.close()
            group.shutdown()
    finish_run(run_dir, {"metrics": final} if final else None,
               ("train/loss", "eval/accuracy", "eval/margin", "train/grad_norm"))
    return final
