"""Ensemble aggregation against hand-worked values, and the metrics it reports."""

import pytest
import torch

from alignrl.registry import REWARD_AGGREGATIONS
from alignrl.rewards.aggregate import MeanParams, UWOParams, WCOParams, aggregate_rewards, mean, uwo, wco

# 3 members x 2 completions: completion 0 agreed on (1, 1, 1), completion 1 disputed (0, 3, 6)
SCORES = torch.tensor([[1.0, 0.0], [1.0, 3.0], [1.0, 6.0]])


def test_mean_wco_uwo_hand_worked():
    assert mean(SCORES, MeanParams()).tolist() == [1.0, 3.0]
    assert wco(SCORES, WCOParams()).tolist() == [1.0, 0.0]
    # population variance of (0, 3, 6) = (9 + 0 + 9) / 3 = 6; std = sqrt(6)
    assert uwo(SCORES, UWOParams(lam=0.5)).tolist() == pytest.approx([1.0, 3.0 - 0.5 * 6.0])
    assert uwo(SCORES, UWOParams(lam=0.5, penalty="std")).tolist() == pytest.approx([1.0, 3.0 - 0.5 * 6.0**0.5])
    assert uwo(SCORES, UWOParams(lam=0.0)).tolist() == mean(SCORES, MeanParams()).tolist()


def test_conservative_rules_rank_the_disputed_completion_lower():
    # by the mean the disputed completion wins; WCO and UWO (λ = 0.5) prefer the agreed one
    assert mean(SCORES, MeanParams())[1] > mean(SCORES, MeanParams())[0]
    for name, params in (("wco", WCOParams()), ("uwo", UWOParams(lam=0.5))):
        r = REWARD_AGGREGATIONS.get(name)(SCORES, params)
        assert r[0] > r[1], name


def test_aggregate_rewards_reports_members_and_disagreement():
    reward, metrics = aggregate_rewards(SCORES, "wco", WCOParams())
    assert reward.tolist() == [1.0, 0.0]
    assert [float(metrics[f"member{k}"]) for k in range(3)] == [0.5, 2.0, 3.5]
    assert float(metrics["disagreement"]) == pytest.approx((0.0 + 6.0**0.5) / 2)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="lam"):
        UWOParams(lam=-1.0)
    with pytest.raises(ValueError, match=r"\(K, B\)"):
        mean(torch.ones(3), MeanParams())
