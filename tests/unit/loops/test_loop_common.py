import math

import pytest

from alignrl.data.collate import TokenizedExample
from alignrl.errors import UserError
from alignrl.loops.common import check_finite
from alignrl.loops.sft import _batches


@pytest.mark.parametrize("key", ["loss", "grad_norm"])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_metrics_stop_with_a_clear_message(key, bad):
    with pytest.raises(UserError, match=rf"step 7: {key} is (nan|inf); training diverged\. Lower learner\.lr"):
        check_finite(7, {"loss": 1.0, "grad_norm": 1.0, key: bad})


def test_finite_metrics_pass():
    assert check_finite(1, {"loss": 0.5, "grad_norm": 2.0, "lr": 1e-3}) is None


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
