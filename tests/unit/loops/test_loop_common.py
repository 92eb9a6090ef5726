import math

import pytest

from alignrl.data.collate import TokenizedExample
from alignrl.errors import UserError
from alignrl.loops.common import BadSteps
from alignrl.loops.sft import _batches


class _Notes:
    def __init__(self):
        self.lines = []

    def note(self, step, text):
        self.lines.append((step, text))


@pytest.mark.parametrize("key", ["loss", "grad_norm"])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_step_the_learner_could_not_skip_stops_at_once(key, bad):
    with pytest.raises(UserError, match=rf"step 7: {key} is (nan|inf) but the learner applied the step; training "
                                        r"diverged\. Lower learner\.lr"):
        BadSteps(limit=3).check(7, {"loss": 1.0, "grad_norm": 1.0, key: bad})


def test_skipped_steps_are_noted_and_counted_until_the_limit():
    notes = _Notes()
    guard = BadSteps(limit=2, tracker=notes)
    assert guard.check(1, {"loss": 0.5, "grad_norm": 2.0, "lr": 1e-3}) is False
    assert guard.check(2, {"skipped": 1.0, "nonfinite_loss_frac": 0.5, "grad_norm": math.nan})
    assert guard.check(3, {"train/skipped": 1.0, "train/grad_norm": math.inf})
    assert notes.lines == [(2, "step 2 skipped: the loss was NaN/inf in 50% of the micro-batches"),
                           (3, "step 3 skipped: the gradient norm was inf")]
    assert guard.check(4, {"loss": 0.4, "grad_norm": 1.0}) is False and guard.consecutive == 0  # a good step resets
    guard.check(5, {}, "rewards were NaN/inf for 1 of 8 samples (rows 3)")
    guard.check(6, {}, "rewards were NaN/inf for 1 of 8 samples (rows 3)")
    with pytest.raises(UserError, match=r"step 7: 3 consecutive steps skipped for NaN/inf values, the last because "
                                        r"rewards were NaN/inf .*train\.max_bad_steps \(now 2\)"):
        guard.check(7, {}, "rewards were NaN/inf for 1 of 8 samples (rows 3)")
    assert guard.total == 5


def test_batches_cover_each_epoch_once_and_are_seeded():
    examples = [TokenizedExample((1, 10 + i, 2), 1) for i in range(10)]
    stream = _batches(examples, batch_size=5, pad_id=0, seed=3)
    epoch = [next(stream) for _ in range(2)]
    seen = sorted(int(t) for b in epoch for t in b.input_ids[:, 1])
    assert seen == list(range(10, 20))
    again = _batches(examples, batch_size=5, pad_id=0, seed=3)
    assert all((next(again).input_ids == b.input_ids).all() for b in epoch)
    other = _batches(examples, batch_size=5, pad_id=0, seed=4)
    assert not (next(other).input_ids == epoch[0].input_ids).all()
