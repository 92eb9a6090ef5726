import pytest
import torch

from alignrl.ops import aggregate, masked_mean


def _inputs():
    # two sequences: lengths 2 and 4 (mask), per-token loss values chosen for easy hand arithmetic
    loss = torch.tensor([[1.0, 3.0, 9.0, 9.0], [2.0, 2.0, 4.0, 8.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    return loss, mask


def test_token_mean_by_hand():
    loss, mask = _inputs()
    # (1+3+2+2+4+8) / 6 = 20/6
    assert aggregate(loss, mask, "token_mean").item() == pytest.approx(20 / 6, abs=1e-12)


def test_seq_mean_token_mean_by_hand():
    loss, mask = _inputs()
    # ((1+3)/2 + (2+2+4+8)/4) / 2 = (2 + 4) / 2 = 3
    assert aggregate(loss, mask, "seq_mean_token_mean").item() == pytest.approx(3.0, abs=1e-12)


def test_seq_mean_token_sum_by_hand():
    loss, mask = _inputs()
    # (4 + 16) / 2 = 10
    assert aggregate(loss, mask, "seq_mean_token_sum").item() == pytest.approx(10.0, abs=1e-12)


def test_global_token_mean_shards_sum_to_full_batch():
    torch.manual_seed(0)
    loss = torch.rand(8, 5, dtype=torch.float64)
    mask = torch.rand(8, 5) > 0.3
    full = aggregate(loss, mask, "token_mean")
    n_global = mask.sum()
    shards = sum(aggregate(loss[i : i + 2], mask[i : i + 2], "global_token_mean", n_global) for i in range(0, 8, 2))
    torch.testing.assert_close(shards, full, rtol=0, atol=1e-12)


def test_masked_values_do_not_leak():
    loss, mask = _inputs()
    poisoned = loss.masked_fill(~mask, float("inf"))
    for mode in ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum"):
        assert torch.isfinite(aggregate(poisoned.nan_to_num(posinf=1e30) * mask, mask, mode))
        assert aggregate(loss, mask, mode) == aggregate(loss.masked_fill(~mask, 123.0), mask, mode)


def test_all_masked_row_gives_zero_not_nan():
    x = torch.ones(2, 3)
    m = torch.tensor([[0, 0, 0], [1, 0, 0]], dtype=torch.bool)
    out = masked_mean(x, m, dim=-1)
    assert out.tolist() == [0.0, 1.0]


def test_unknown_mode_lists_known():
    loss, mask = _inputs()
    with pytest.raises(ValueError, match="token_mean"):
        aggregate(loss, mask, "per_token")
