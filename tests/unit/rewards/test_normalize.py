"""Running and per-group reward normalization."""

import pytest
import torch

from alignrl.rewards.normalize import RunningStats, normalize_group, normalize_running


def test_running_stats_over_batches_equal_the_whole_data():
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(n, generator=g) * 3 + 2 for n in (5, 17, 1, 40)]
    stats = RunningStats()
    for b in batches:
        stats = stats.update(b)
    whole = torch.cat(batches).double()
    assert stats.count == whole.numel()
    assert stats.mean == pytest.approx(float(whole.mean()), abs=1e-12)
    assert stats.std == pytest.approx(float(whole.std(unbiased=False)), abs=1e-12)


def test_normalize_running_uses_the_stats_including_this_batch():
    r = torch.tensor([1.0, 3.0])
    out, stats = normalize_running(r, RunningStats())
    assert out.tolist() == pytest.approx([-1.0, 1.0], abs=1e-5)  # mean 2, std 1
    out2, _ = normalize_running(torch.tensor([2.0, 2.0]), stats)  # now mean 2, std sqrt(0.5)
    assert out2.tolist() == pytest.approx([0.0, 0.0], abs=1e-6)


def test_normalize_group_is_per_prompt():
    r = torch.tensor([0.0, 2.0, 10.0, 10.0])
    out = normalize_group(r, 2)
    assert out.tolist() == pytest.approx([-1.0, 1.0, 0.0, 0.0], abs=1e-5)
    with pytest.raises(ValueError, match="groups of 3"):
        normalize_group(r, 3)
