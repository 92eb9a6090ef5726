"""An EMA anchor under ZeRO-3 (sharded beside the policy) behaves exactly like the unsharded one: same anchor
log-probs fed to the loss at every step, same anchor weights after training, and a checkpointed anchor loads back.
Real Ray actors, real DeepSpeed engines (CPU accelerator, gloo), a tiny model."""

import pytest
import torch

from alignrl.actors.cluster import ray_session
from alignrl.actors.learner import LearnerGroup
from alignrl.anchors.ema import EMAParams
from alignrl.engine.deepspeed_learner import LearnerSettings
from alignrl.engine.moving_anchors import MovingAnchorSpec
from alignrl.loops.sft import sft_micro_loss
from alignrl.objectives.sft import SFTParams
from alignrl.types import LossOut, RolloutBatch, TokenBatch

pytestmark = pytest.mark.integration
SPECS = [MovingAnchorSpec(name="ema", rule="ema", params=EMAParams(decay=0.5))]


def _batch(n: int, seed: int) -> RolloutBatch:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 90, (n, 10), generator=g)
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[:, :4] = False
    return RolloutBatch(TokenBatch(ids, torch.ones_like(ids), mask))


def _loss_reporting_anchor():
    """SFT loss plus the masked mean of the anchor log-probs the learner put in the batch (defined in a closure
    so Ray pickles it by value: the workers cannot import this test module)."""

    def loss(model, micro: RolloutBatch) -> LossOut:
        out = sft_micro_loss(model, micro.tokens, SFTParams())
        mask = micro.tokens.loss_mask.float()
        anchor = (micro.rows["anchor_logp/ema"].to(mask.device) * mask).sum() / mask.sum()
        return LossOut(out.loss, {**out.metrics, "anchor_logp": anchor.detach()})

    return loss


def _group(model_dir, workers: int, stage: int) -> LearnerGroup:
    settings = LearnerSettings(model_dir=str(model_dir), world_size=workers, batch_size=8,
                               micro_batch_size=4 // workers, total_steps=4, lr=1e-2, zero_stage=stage, seed=0)
    return LearnerGroup(settings, cpus_per_worker=0.5, moving_anchors=SPECS)


def _train(group: LearnerGroup, steps: int) -> tuple[list[float], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    loss_fn = _loss_reporting_anchor()
    logps = [group.train_step(_batch(8, seed=step), loss_fn)["anchor_logp"] for step in range(steps)]
    return logps, group.anchor_states()["ema"], group.full_state_dict()


@pytest.fixture(scope="module")
def ray_local():
    with ray_session(num_cpus=2):
        yield


def test_zero3_ema_matches_the_unsharded_ema_and_reloads(ray_local, tiny_model_dir):
    group = _group(tiny_model_dir, workers=1, stage=0)
    try:
        plain_logps, plain_ema, plain_policy = _train(group, steps=3)
    finally:
        group.shutdown()
    group = _group(tiny_model_dir, workers=2, stage=3)
    try:
        sharded_logps, sharded_ema, sharded_policy = _train(group, steps=3)
        group.load_anchor_states({"ema": plain_policy})  # what a resume does, here with recognisable weights
        reloaded = group.anchor_states()["ema"]
    finally:
        group.shutdown()
    # step 1 scores with the untouched anchor (= init); later steps with the moved EMA: all agree
    assert plain_logps[1] != pytest.approx(plain_logps[0], abs=1e-3)
    assert sharded_logps == pytest.approx(plain_logps, abs=2e-4)
    assert set(sharded_ema) == set(plain_ema)
    # to 1e-3 of each tensor's move (norms): Adam divides by √v, so an element with a tiny gradient turns the two
    # layouts' float order into a visible difference (3e-5 on one element, on an AVX-512 Xeon); a wrong EMA or
    # gather would be off by the whole move
    from alignrl.models.export import load_hf_weights

    start = load_hf_weights(tiny_model_dir)
    for name, tensor in plain_ema.items():
        for got, want in ((sharded_ema[name], tensor), (sharded_policy[name], plain_policy[name])):
            assert torch.linalg.norm(got - want) <= 1e-3 * torch.linalg.norm(want - start[name]) + 1e-7, name
        torch.testing.assert_close(reloaded[name], plain_policy[name], rtol=0, atol=0)
    # decay 0.5 keeps the EMA strictly between the start and the policy, not on either
    moved = [n for n in plain_ema if not torch.equal(plain_ema[n], plain_policy[n])]
    assert len(moved) == len(plain_ema)
