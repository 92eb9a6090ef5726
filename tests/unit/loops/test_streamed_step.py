"""The streamed step's bookkeeping: which rows make which rank's micro-batch, when it is sent, joining parts of
different widths, and closing a step that failed part-way (the learner itself runs in the integration test)."""

import math

import pytest
import torch

from alignrl.loops.streamed_step import RowFeeder, _joined, concat_rows
from alignrl.rewards.combine import Scored
from alignrl.types import RolloutBatch, TokenBatch


class Recorder:
    """Stands in for a StreamedStep: records what each rank was sent."""

    def __init__(self):
        self.sent = []

    def send(self, rank, micro, loss_fn):
        self.sent.append((rank, micro))


def _part(first: int, rows: int, width: int) -> RolloutBatch:
    ids = torch.arange(first, first + rows).unsqueeze(1).repeat(1, width)  # each row's tokens say its row number
    ones = torch.ones_like(ids)
    return RolloutBatch(TokenBatch(ids, ones, ones.bool()), {"advantages": ids[:, 0].float(),
                                                             "logp_rollout": -ones.float()})


def test_micro_batches_go_out_as_soon_as_their_rows_are_in_and_join_parts():
    rec = Recorder()
    feeder = RowFeeder(rec, ranks=2, rows=24, micro_batch_size=6, loss_fn=None, pad_id=0)
    feeder.add(8, _part(8, 8, width=5))  # the middle part first: no micro-batch is whole yet
    assert rec.sent == []
    feeder.add(16, _part(16, 8, width=3))  # rows 8-23: rank 1's rows 12-17 and 18-23
    assert [(rank, micro.tokens.input_ids[:, 0].tolist()) for rank, micro in rec.sent] == [
        (1, [12, 13, 14, 15, 16, 17]), (1, [18, 19, 20, 21, 22, 23])]
    joined = rec.sent[0][1]
    assert joined.tokens.input_ids.shape == (6, 5)  # padded to the wider part
    assert joined.tokens.attention_mask[4:, 3:].sum() == 0 and joined.rows["logp_rollout"][4:, 3:].abs().sum() == 0
    assert feeder.sent_early == 0
    feeder.add(0, _part(0, 8, width=4))
    assert feeder.sent_early == 2  # rank 1's two were out before the last part came
    assert [(rank, micro.tokens.input_ids[:, 0].tolist()) for rank, micro in rec.sent[2:]] == [
        (0, [0, 1, 2, 3, 4, 5]), (0, [6, 7, 8, 9, 10, 11])]


def test_a_step_that_failed_part_way_is_filled_with_poisoned_copies():
    rec = Recorder()
    feeder = RowFeeder(rec, ranks=2, rows=16, micro_batch_size=4, loss_fn=None, pad_id=0)
    feeder.add(0, _part(0, 8, width=3))  # rank 0 got both its micro-batches, rank 1 none
    feeder.fill_with_poison()
    assert [rank for rank, _ in rec.sent] == [0, 0, 1, 1]
    for _, micro in rec.sent[2:]:
        assert torch.isnan(micro.rows["advantages"]).all()  # the learner's gradient norm is NaN: it skips the step
    assert not torch.isnan(rec.sent[0][1].rows["advantages"]).any()


def test_concat_rows_pads_per_token_rows_and_joins_per_row_ones():
    a, b = _part(0, 2, width=2), _part(2, 3, width=4).with_rows(topk=torch.ones(3, 4, 2))
    a = a.with_rows(topk=torch.ones(2, 2, 2))
    out = concat_rows([a, b], pad_id=7)
    assert out.tokens.input_ids.shape == (5, 4) and out.tokens.input_ids[0, 2:].tolist() == [7, 7]
    assert out.rows["topk"].shape == (5, 4, 2) and out.rows["topk"][0, 2:].sum() == 0
    assert out.rows["advantages"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_joined_rewards_keep_row_order_and_metrics_are_row_weighted_means():
    parts = [Scored(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 0.0]), {"train/reward/x": 1.5}),
             Scored(torch.tensor([4.0, 5.0, 6.0, 7.0]), torch.zeros(4), {"train/reward/x": 5.5})]
    out = _joined(parts)
    assert out.rewards.tolist() == [1.0, 2.0, 4.0, 5.0, 6.0, 7.0]
    assert out.metrics["train/reward/x"] == pytest.approx(25.0 / 6)  # the mean over all six rows
    assert math.isclose(float(out.correct.sum()), 1.0)
