"""Rewards: ensemble aggregation and normalization (pure, torch only; importing registers the aggregations).
Reward-model hosting lives in ``rewards.models`` and the ``RewardWorker`` actor, imported where used."""

from alignrl.rewards import aggregate  # noqa: F401
