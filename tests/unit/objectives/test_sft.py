import math

import pytest
import torch

from alignrl.objectives.sft import SFTParams, sft_loss
from alignrl.registry import TRAIN_LOSSES


def test_registered_with_params():
    entry = TRAIN_LOSSES.entry("sft")
    assert entry.fn is sft_loss and entry.params is SFTParams


def test_nll_by_hand():
    # log-probs of ln(1/2) and ln(1/4) on the two target tokens; the first position is not a target
    logp = torch.tensor([[0.0, math.log(0.5), math.log(0.25)]], dtype=torch.float64)
    mask = torch.tensor([[False, True, True]])
    out = sft_loss(logp, mask, SFTParams())
    # (ln 2 + ln 4) / 2 = 1.5 ln 2
    assert out.loss.item() == pytest.approx(1.5 * math.log(2), abs=1e-12)
    assert out.metrics["tokens"].item() == 2


def test_gradient_is_minus_one_over_tokens():
    logp = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    sft_loss(logp, mask, SFTParams()).loss.backward()
    expected = -mask.double() / 3
    torch.testing.assert_close(logp.grad, expected, rtol=0, atol=1e-15)


def test_seq_mean_weights_sequences_equally():
    logp = torch.tensor([[-1.0, -1.0, -1.0], [-4.0, 0.0, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]], dtype=torch.bool)
    # token mean: (3 + 4) / 4 = 1.75; sequence mean: (1 + 4) / 2 = 2.5
    assert sft_loss(logp, mask, SFTParams(loss_agg="token_mean")).loss.item() == pytest.approx(1.75)
    assert sft_loss(logp, mask, SFTParams(loss_agg="seq_mean_token_mean")).loss.item() == pytest.approx(2.5)
