import math

import pytest
import torch

from alignrl.anchors.masks import certainty, certainty_weights, reward_gated_mask


def test_reward_gated_mask_by_hand():
    reward = torch.tensor([0.0, 1.0, -1.0])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0]], dtype=torch.bool)
    zero = reward_gated_mask(reward, mask, when="zero")
    assert zero.tolist() == [[True, True, False], [False, False, False], [False, False, False]]
    nonpos = reward_gated_mask(reward, mask, when="nonpositive")
    assert nonpos.tolist() == [[True, True, False], [False, False, False], [True, False, False]]
    assert torch.equal(reward_gated_mask(reward, mask, when="all"), mask)
    with pytest.raises(ValueError, match="when"):
        reward_gated_mask(reward, mask, when="negative")
    with pytest.raises(ValueError, match="does not match"):
        reward_gated_mask(reward[:2], mask)


def test_certainty_by_hand():
    # p = [1/2, 1/4, 1/4], V = 3
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25]]], dtype=torch.float64))
    assert certainty(logits, "max_prob").item() == pytest.approx(0.5, abs=1e-15)
    # 1 + ln(1/2) / ln 3
    assert certainty(logits, "negentropy_max_prob").item() == pytest.approx(1 - math.log(2) / math.log(3), abs=1e-15)
    # H = ½ ln 2 + ½ ln 4 = 1.5 ln 2 -> 1 − 1.5 ln 2 / ln 3
    assert certainty(logits, "negentropy").item() == pytest.approx(1 - 1.5 * math.log(2) / math.log(3), abs=1e-15)


def test_certainty_limits():
    uniform = torch.zeros(2, 3, 5, dtype=torch.float64)
    torch.testing.assert_close(certainty(uniform, "max_prob"), torch.full((2, 3), 0.2, dtype=torch.float64))
    for est in ("negentropy_max_prob", "negentropy"):
        torch.testing.assert_close(certainty(uniform, est), torch.zeros(2, 3, dtype=torch.float64), rtol=0, atol=1e-15)
    peaked = torch.tensor([[[200.0, 0.0, 0.0]]], dtype=torch.float64)  # one-hot up to e^-200
    for est in ("max_prob", "negentropy_max_prob", "negentropy"):
        assert certainty(peaked, est).item() == pytest.approx(1.0, abs=1e-12)


def test_certainty_weights_formula_and_mask():
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.9, 0.05, 0.05]]], dtype=torch.float64))
    mask = torch.tensor([[True, False]])
    # b = −1, a = 2: c = 2·u² − 1 -> u = 0.5 gives −0.5; the second token is masked out
    w = certainty_weights(logits, mask, exponent=2.0, intercept=-1.0)
    torch.testing.assert_close(w, torch.tensor([[-0.5, 0.0]], dtype=torch.float64), rtol=0, atol=1e-15)
    # b = 0, a = 1 is u itself; c(1) = 1 for any a, b
    torch.testing.assert_close(certainty_weights(logits, mask | True), certainty(logits), rtol=0, atol=0)
    sure = torch.tensor([[[300.0, 0.0]]], dtype=torch.float64)
    assert certainty_weights(sure, torch.ones(1, 1, dtype=torch.bool), exponent=3.0, intercept=-2.0).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="intercept"):
        certainty_weights(logits, mask, intercept=0.5)


def test_bf16_logits_give_fp32_weights():
    logits = torch.randn(2, 4, 7, generator=torch.Generator().manual_seed(0)).bfloat16()
    w = certainty_weights(logits, torch.ones(2, 4, dtype=torch.bool), intercept=-0.5)
    assert w.dtype == torch.float32
    torch.testing.assert_close(w, certainty_weights(logits.float(), torch.ones(2, 4, dtype=torch.bool), intercept=-0.5))
