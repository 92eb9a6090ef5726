"""Real Ray actors around real DeepSpeed engines (CPU accelerator, gloo) on a tiny model."""

import functools
import math

import pytest
import torch

from alignrl.actors.cluster import ray_session
from alignrl.actors.learner import LearnerGroup
from alignrl.engine.deepspeed_learner import LearnerSettings
from alignrl.loops.sft import sft_micro_loss
from alignrl.objectives.sft import SFTParams
from alignrl.types import TokenBatch

pytestmark = pytest.mark.integration


def _batch(n: int, seed: int) -> TokenBatch:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 90, (n, 10), generator=g)
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[:, :4] = False  # a "prompt" of four tokens, the same length in every row
    return TokenBatch(ids, torch.ones_like(ids), mask)


def _train(model_dir, workers: int, stage: int, steps: int) -> tuple[list[dict], list[dict[str, torch.Tensor]]]:
    settings = LearnerSettings(
        model_dir=str(model_dir), world_size=workers, batch_size=8, micro_batch_size=8 // workers,
        total_steps=steps, lr=1e-2, zero_stage=stage, seed=0,
    )
    group = LearnerGroup(settings, cpus_per_worker=0.5)
    try:
        loss_fn = functools.partial(sft_micro_loss, params=SFTParams())
        metrics = [group.train_step(_batch(8, seed=0), loss_fn) for _ in range(steps)]
        per_rank = group._call("full_state_dict", [()] * workers)
    finally:
        group.shutdown()
    return metrics, per_rank


@pytest.fixture(scope="module")
def ray_local():
    with ray_session(num_cpus=2):
        yield


def test_two_zero2_workers_match_one_worker(ray_local, tiny_model_dir):
    single_metrics, (single,) = _train(tiny_model_dir, workers=1, stage=0, steps=3)
    dp_metrics, ranks = _train(tiny_model_dir, workers=2, stage=2, steps=3)
    # data parallel keeps the replicas identical ...
    for name, tensor in ranks[0].items():
        torch.testing.assert_close(ranks[1][name], tensor, rtol=0, atol=0)
    # ... and, with equal token counts per shard, takes the same step as one worker on the whole batch: to 1e-3 of
    # each tensor's move (norms; Adam divides by √v, so an element with a tiny gradient turns the two reduction
    # orders' float difference into a visible one; a wrong shard average would be off by the whole move)
    from alignrl.models.export import load_hf_weights

    start = load_hf_weights(tiny_model_dir)
    for name, tensor in single.items():
        moved = torch.linalg.norm(tensor - start[name])
        assert torch.linalg.norm(ranks[0][name] - tensor) <= 1e-3 * moved + 1e-7, name
    assert [round(m["loss"], 4) for m in dp_metrics] == [round(m["loss"], 4) for m in single_metrics]
    # the same batch three times: the loss falls
    assert single_metrics[-1]["loss"] < single_metrics[0]["loss"]
    assert all(m["grad_norm"] > 0 for m in single_metrics + dp_metrics)


def test_zero3_gathers_full_weights(ray_local, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    _, (state,) = _train(tiny_model_dir, workers=1, stage=3, steps=1)
    reference = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    assert set(state) == set(reference)
    for name, tensor in reference.items():
        assert state[name].shape == tensor.shape, name
    changed = [n for n in reference if not torch.equal(state[n], reference[n])]
    assert len(changed) == len(reference), f"unchanged after a step: {set(reference) - set(changed)}"


def test_dead_worker_gives_a_clear_error(ray_local, tiny_model_dir):
    import ray

    from alignrl.errors import UserError

    settings = LearnerSettings(model_dir=str(tiny_model_dir), world_size=1, batch_size=4, micro_batch_size=4,
                               total_steps=1, lr=1e-3)
    group = LearnerGroup(settings, cpus_per_worker=0.5)
    try:
        ray.kill(group.workers[0])
        with pytest.raises(UserError, match=r"learner worker\(s\) \[0\] died during train_step"):
            group.train_step(_batch(4, seed=0), functools.partial(sft_micro_loss, params=SFTParams()))
    finally:
        group.shutdown()


def _ragged_batch(n: int, seed: int, width: int = 24) -> TokenBatch:
    """Prompts of 2..15 tokens left-padded up to column 16, then 4 completion tokens, right padding after: rows
    of very different lengths with the same number of loss tokens (so row-weighted means are exact)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.zeros(n, width, dtype=torch.long)
    attention = torch.zeros(n, width, dtype=torch.long)
    loss = torch.zeros(n, width, dtype=torch.bool)
    prompt_lens = [2 + (3 * i) % 14 for i in range(n)]
    for i, p in enumerate(prompt_lens):
        ids[i, 16 - p:20] = torch.randint(4, 90, (p + 4,), generator=g)
        attention[i, 16 - p:20] = 1
        loss[i, 16:20] = True
    return TokenBatch(ids, attention, loss)


def _steps(model_dir, batch: TokenBatch, workers: int, stage: int, **kw) -> list[dict]:
    settings = LearnerSettings(model_dir=str(model_dir), world_size=workers, batch_size=len(batch),
                               micro_batch_size=len(batch) // workers, total_steps=2, lr=1e-3, zero_stage=stage,
                               seed=0, **kw)
    group = LearnerGroup(settings, cpus_per_worker=0.5)
    try:
        loss_fn = functools.partial(sft_micro_loss, params=SFTParams())
        return [group.train_step(batch, loss_fn) for _ in range(2)]
    finally:
        group.shutdown()


def test_token_budget_micro_batches_take_the_same_step_with_less_padding(ray_local, tiny_model_dir):
    batch = _ragged_batch(16, seed=1)
    fixed = _steps(tiny_model_dir, batch, workers=1, stage=0)
    budget = _steps(tiny_model_dir, batch, workers=1, stage=0, micro_batch_tokens=40)
    # two ZeRO-2 ranks: rank 0 gets the 8 longest rows (more micro-batches), rank 1 the 8 shortest; the counts are
    # equalised, as ZeRO-2 reduces gradients in every backward pass
    order = (batch.attention_mask.sum(1)).argsort(descending=True, stable=True)
    dp = _steps(tiny_model_dir, batch.select(order), workers=2, stage=2, micro_batch_tokens=40)
    assert fixed[0]["micro_batches"] == 1 and budget[0]["micro_batches"] > 2
    assert budget[0]["pad_frac"] < fixed[0]["pad_frac"] - 0.2
    for other in (budget, dp):
        for a, b in zip(fixed, other):
            assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
        assert other[0]["grad_norm"] == pytest.approx(fixed[0]["grad_norm"], rel=1e-4)


def test_packed_sequences_take_the_same_step_computing_less_padding(ray_local, tiny_model_dir):
    batch = _ragged_batch(16, seed=1)
    padded = _steps(tiny_model_dir, batch, workers=1, stage=0)
    packed = _steps(tiny_model_dir, batch, workers=1, stage=0, pack_sequences=True)
    both = _steps(tiny_model_dir, batch, workers=2, stage=2, micro_batch_tokens=40, pack_sequences=True)
    real = int(batch.attention_mask.sum())
    assert padded[0]["pad_frac"] == pytest.approx(1 - real / batch.attention_mask.numel())
    assert packed[0]["pad_frac"] < padded[0]["pad_frac"] - 0.2
    for other in (packed, both):
        for a, b in zip(padded, other):
            assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
        assert other[0]["grad_norm"] == pytest.approx(padded[0]["grad_norm"], rel=1e-4)


POISON = 99  # a first token that makes the loss NaN


def _poisonable_loss():
    """An SFT loss that is NaN on a micro-batch holding a POISON row (a closure: Ray pickles it by value)."""
    from alignrl.types import LossOut

    params = SFTParams()

    def loss(model, micro):
        out = sft_micro_loss(model, micro, params)
        if bool((micro.input_ids[:, 0] == POISON).any()):
            return LossOut(out.loss * float("nan"), out.metrics)
        return out
    return loss


@pytest.mark.parametrize("zero_stage", [0, 2, 3])  # 0: our own check of the reduced norm; 1-3: DeepSpeed's
def test_a_nan_step_is_skipped_leaving_weights_and_optimizer_untouched(ray_local, tiny_model_dir, zero_stage):
    good, bad = _batch(8, seed=0), _batch(8, seed=1)
    bad.input_ids[5, 0] = POISON  # one row of the second micro-batch (4 rows each)
    loss_fn = _poisonable_loss()

    def run(batches):
        settings = LearnerSettings(model_dir=str(tiny_model_dir), world_size=1, batch_size=8, micro_batch_size=4,
                                   total_steps=4, lr=1e-2, seed=0, warmup_steps=2, zero_stage=zero_stage)
        group = LearnerGroup(settings, cpus_per_worker=0.5)
        try:
            start = group.full_state_dict()
            metrics = []
            for b in batches:
                metrics.append(group.train_step(b, loss_fn))
                if len(metrics) == 1:
                    after_first = group.full_state_dict()
            return start, after_first, group.full_state_dict(), metrics
        finally:
            group.shutdown()

    start, after_bad, end, metrics = run([bad, good])
    assert metrics[0]["skipped"] == 1.0 and metrics[0]["nonfinite_loss_frac"] == 0.5
    assert not math.isfinite(metrics[0]["grad_norm"]) and "loss" not in metrics[0]
    assert all(torch.equal(after_bad[n], t) for n, t in start.items())  # no update
    # the optimizer and LR schedule did not move either: the good step then equals a fresh learner's first step
    _, _, fresh, fresh_metrics = run([good])
    assert metrics[1]["lr"] == fresh_metrics[0]["lr"] and metrics[1]["loss"] == fresh_metrics[0]["loss"]
    for name, t in fresh.items():
        torch.testing.assert_close(end[name], t, rtol=0, atol=0)


@pytest.mark.parametrize("stage,workers", [(2, 2), (3, 1)])
def test_a_zero_checkpoint_loads_weights_only_and_training_goes_on_exactly(ray_local, tiny_model_dir, tmp_path,
                                                                           stage, workers):
    """DeepSpeed's partitioned optimizer states, read back with torch.load(weights_only=True): the steps after a
    reload equal the steps of the learner that went on."""
    settings = LearnerSettings(model_dir=str(tiny_model_dir), world_size=workers, batch_size=8,
                               micro_batch_size=8 // workers, total_steps=8, lr=1e-2, zero_stage=stage, seed=0,
                               warmup_steps=6)
    loss_fn = functools.partial(sft_micro_loss, params=SFTParams())
    group = LearnerGroup(settings, cpus_per_worker=0.5)
    try:
        for seed in (0, 1):
            group.train_step(_batch(8, seed=seed), loss_fn)
        group.save_engine_state(str(tmp_path / "ck"), "step_2")
        went_on = [group.train_step(_batch(8, seed=seed), loss_fn) for seed in (2, 3)]
        expected = group.full_state_dict()
    finally:
        group.shutdown()
    group = LearnerGroup(settings, cpus_per_worker=0.5)
    try:
        group.load_engine_state(str(tmp_path / "ck"), "step_2", 2)
        reloaded = [group.train_step(_batch(8, seed=seed), loss_fn) for seed in (2, 3)]
        got = group.full_state_dict()
    finally:
        group.shutdown()
    assert [(m["loss"], m["lr"]) for m in reloaded] == [(m["loss"], m["lr"]) for m in went_on]
    assert went_on[0]["lr"] < went_on[1]["lr"]  # still warming up: the schedule's position was restored
    for name, tensor in expected.items():
        torch.testing.assert_close(got[name], tensor, rtol=0, atol=0)
