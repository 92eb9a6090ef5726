"""The streamed online-RL step (``rollout.stream_learner``): the learner trains on each part of the batch as soon
as that part is generated and scored, while the rollout workers still generate, and the scorers and reward
models still score, the other parts.

Each rollout worker generates whole prompt groups, so a part's rewards and group-local advantages are final the
moment the part is scored. A learner rank's micro-batch is sent once every row of it has arrived (rows m·mbs to
(m+1)·mbs of the rank's contiguous shard, exactly as ``train_step`` cuts a whole batch), and the last ones close
the optimizer step. The result equals the step after the whole batch, up to the float order of the gradient sum
and padding widths (tested). What needs the whole batch before its first update is refused at recipe load:
batch-wide advantage normalization, running reward normalization, a critic, dynamic sampling, several updates per
batch, micro-batches by token budget, asynchronous rollout.
"""

from __future__ import annotations

import time

import ray
import torch

from alignrl.actors.cluster import WorkerRestarted
from alignrl.loops.online_rl import (
    Collected,
    _anchor_rows,
    _score_async,
    build_batch,
    nonfinite_reason,
    overlong_shaping,
    rl_micro_loss,
    with_advantages,
)
from alignrl.rewards.combine import Scored
from alignrl.rollout.base import SamplingConfig
from alignrl.types import RolloutBatch, TokenBatch


def concat_rows(parts: list[RolloutBatch], pad_id: int) -> RolloutBatch:
    """Row pieces of different widths as one batch, right-padded to the widest (past each row's end, where
    every loss is masked); per-token rows (B, T, ...) are zero-padded, per-row ones (B,) joined."""
    width = max(b.tokens.input_ids.shape[1] for b in parts)

    def pad(t: torch.Tensor, value) -> torch.Tensor:
        if t.ndim < 2 or t.shape[1] == width:
            return t
        return torch.nn.functional.pad(t, [0, 0] * (t.ndim - 2) + [0, width - t.shape[1]], value=value)

    tokens = TokenBatch(torch.cat([pad(b.tokens.input_ids, pad_id) for b in parts]),
                        torch.cat([pad(b.tokens.attention_mask, 0) for b in parts]),
                        torch.cat([pad(b.tokens.loss_mask, False) for b in parts]))
    return RolloutBatch(tokens, {k: torch.cat([pad(b.rows[k], 0) for b in parts]) for k in parts[0].rows})


class RowFeeder:
    """Sends each learner rank its micro-batches as their rows arrive (``add``), in order, ``mbs`` rows each."""

    def __init__(self, stream, ranks: int, rows: int, micro_batch_size: int, loss_fn, pad_id: int) -> None:
        self.stream, self.loss_fn, self.pad_id = stream, loss_fn, pad_id
        self.rows, self.shard, self.mbs, self.ranks = rows, rows // ranks, micro_batch_size, ranks
        self.parts: list[tuple[int, RolloutBatch]] = []  # (first row, rows)
        self.sent_micro = [0] * ranks
        self.first_micro: RolloutBatch | None = None
        self.sent_early = 0  # micro-batches sent before the last part was in: the learner's head start

    def add(self, first_row: int, part: RolloutBatch) -> None:
        self.parts.append((first_row, part))
        if sum(len(b) for _, b in self.parts) == self.rows:
            self.sent_early = sum(self.sent_micro)
        for rank in range(self.ranks):
            while self.sent_micro[rank] < self.shard // self.mbs:
                lo = rank * self.shard + self.sent_micro[rank] * self.mbs
                micro = self._rows(lo, lo + self.mbs)
                if micro is None:
                    break
                self.first_micro = self.first_micro or micro
                self.stream.send(rank, micro, self.loss_fn)
                self.sent_micro[rank] += 1

    def _rows(self, lo: int, hi: int) -> RolloutBatch | None:
        pieces, at = [], lo
        for first, part in sorted(self.parts, key=lambda x: x[0]):
            if first <= at < first + len(part):
                take = min(hi, first + len(part)) - at
                pieces.append(part.slice(at - first, at - first + take))
                at += take
        return concat_rows(pieces, self.pad_id) if at == hi else None

    def fill_with_poison(self) -> None:
        """After a failure part-way: every rank gets its missing micro-batches as copies of one already sent, with
        NaN advantages, so all ranks finish the step in lockstep and the learner skips it (its gradient norm is
        NaN): the optimizer, the schedule and the anchors stay untouched, and the batch can be redone."""
        if self.first_micro is None:
            return
        poisoned = self.first_micro.with_rows(advantages=torch.full_like(self.first_micro.rows["advantages"],
                                                                          float("nan")))
        for rank in range(self.ranks):
            while self.sent_micro[rank] < self.shard // self.mbs:
                self.stream.send(rank, poisoned, self.loss_fn)
                self.sent_micro[rank] += 1


def collect_and_train(step, cfg, p, plans, coefs, loss_terms, rewarder, prompts, tokenizer, rollout, scorers,
                      learner, adv_entry, adv_params, sampling) -> tuple[Collected, list[dict[str, float]]]:
    """Generate, score and train one step, each rollout worker's part trained on as soon as it is scored (module
    docstring). Returns the step's Collected (the whole batch, as ``_collect`` builds it) and the learner's
    metrics. A worker that dies part-way: the learner skips this step's update (``RowFeeder.fill_with_poison``)
    and the WorkerRestarted goes up, for the caller to redo the step."""
    import functools

    t_start = time.perf_counter()
    g = p.group_size
    topk = {n: a.topk for n, a in zip(cfg.anchor_names, cfg.anchors) if a.estimator == "topk"}
    seed = cfg.seed * 1_000_003 + step * 101  # attempt 0, as _rollout
    loss_fn = functools.partial(rl_micro_loss, params=p, anchors=tuple(loss_terms), on_policy=True, sampled=True,
                                stale=False)
    stream = learner.begin_step()
    feeder = RowFeeder(stream, len(learner.workers), len(prompts) * g, learner.settings.micro_batch_size, loss_fn,
                       tokenizer.pad_token_id)
    pending = {ref: (start, stop) for start, stop, ref in
               rollout.generate_parts([x.prompt for x in prompts], SamplingConfig(seed=seed, **sampling))}
    unscored: dict[int, dict] = {}  # prompt start -> what scoring that part needs
    done: dict[int, dict] = {}
    try:
        while pending or unscored:
            if pending:
                (start, stop), part_groups = rollout.next_part(pending)
                completions = [c for group in part_groups for c in group]
                texts = [x.prompt for x in prompts[start:stop] for _ in range(g)]
                batch = build_batch([tokenizer(t)["input_ids"] for t in texts], completions, tokenizer.pad_token_id)
                unscored[start] = {
                    "stop": stop, "batch": batch, "completions": completions, "prompts": texts,
                    "answers": [x.answer for x in prompts[start:stop] for _ in range(g)],
                    "scorer_refs": {n: _score_async(s, batch.tokens, topk.get(n)) for n, s in scorers.items()},
                    "reward_refs": rewarder.score_models_async(texts, [c.text for c in completions])}
                if not pending:
                    t_gen = time.perf_counter()
            for start in _scored(unscored, block=not pending):
                part = unscored.pop(start)
                done[start] = _train_part(part, start * g, feeder, scorers, topk, rewarder, cfg, p, plans, coefs,
                                          adv_entry, adv_params)
    except WorkerRestarted:
        if feeder.first_micro is not None:  # some ranks have begun accumulating: close the step, skipped
            feeder.fill_with_poison()
            stream.finish()
        raise
    learner_metrics = stream.finish() | {"streamed_parts": float(len(done)),
                                         "streamed_early_frac": feeder.sent_early / max(1, sum(feeder.sent_micro))}
    order = sorted(done)
    joined = concat_rows([done[s]["batch"] for s in order], tokenizer.pad_token_id)
    batch = RolloutBatch(joined.tokens, {"logp_rollout": joined.rows["logp_rollout"]})
    scored = _joined([done[s]["scored"] for s in order])
    anchor_rows = {k: v for k, v in joined.rows.items() if k.startswith("anchor_") and not k.startswith("anchor_mask/")}
    completions = [c for s in order for c in done[s]["completions"]]
    got = Collected(batch, scored.rewards, scored.correct, completions, 1.0, anchor_rows, t_gen - t_start,
                    time.perf_counter() - t_gen, False, True, scored.metrics)
    return got, [learner_metrics]


def _scored(unscored: dict[int, dict], block: bool) -> list[int]:
    """The parts (by prompt start) whose scorer and reward-model results are all in; with ``block``, waits for at
    least one."""
    ready = []
    while not ready:
        for start, part in unscored.items():
            refs = [r for r in part["scorer_refs"].values()] + [r for r in part["reward_refs"].values()]
            refs = [r for r in refs if isinstance(r, ray.ObjectRef)]
            if not refs or len(ray.wait(refs, num_returns=len(refs), timeout=0)[0]) == len(refs):
                ready.append(start)
        if ready or not block or not unscored:
            return ready
        every = [r for part in unscored.values() for r in list(part["scorer_refs"].values()) +
                 list(part["reward_refs"].values()) if isinstance(r, ray.ObjectRef)]
        ray.wait(every, num_returns=1, timeout=1.0)
    return ready


def _train_part(part: dict, first_row: int, feeder: RowFeeder, scorers, topk, rewarder, cfg, p, plans, coefs,
                adv_entry, adv_params) -> dict:
    """Rewards (+ overlong shaping) and group-local advantages of one scored part, handed to the feeder."""
    anchor_rows = _anchor_rows(scorers, [(part["scorer_refs"], part["batch"].tokens.input_ids.shape[1])], topk) \
        if scorers else {}
    scored = rewarder.score(part["prompts"], [c.text for c in part["completions"]], part["answers"],
                            model_parts={n: [ref] for n, ref in part["reward_refs"].items()})
    lengths = torch.tensor([len(c.token_ids) for c in part["completions"]])
    rewards = scored.rewards + overlong_shaping(lengths, cfg.rollout.max_new_tokens, p.overlong_buffer,
                                                p.overlong_penalty)
    batch, adv, _ = with_advantages(part["batch"], rewards, scored.correct, anchor_rows, plans, coefs, adv_entry,
                                    adv_params, p.group_size)
    if nonfinite_reason(rewards, adv.adv, batch.tokens.loss_mask) is not None:  # the learner must skip the step
        batch = batch.with_rows(advantages=torch.full_like(batch.rows["advantages"], float("nan")))
    feeder.add(first_row, batch)
    return {"batch": batch, "completions": part["completions"],
            "scored": Scored(rewards, scored.correct, scored.metrics)}


def _joined(parts: list[Scored]) -> Scored:
    """The parts' rewards in row order; each metric (a mean over rows) averaged with the parts' row counts."""
    rows = torch.tensor([float(len(s.rewards)) for s in parts])
    keys = dict.fromkeys(k for s in parts for k in s.metrics)
    metrics = {k: float(sum(n * s.metrics[k] for n, s in zip(rows, parts) if k in s.metrics) / rows.sum())
               for k in keys}
    return Scored(torch.cat([s.rewards for s in parts]), torch.cat([s.correct for s in parts]), metrics)
