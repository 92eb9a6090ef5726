"""Our GRPO and RLOO advantages against TRL 1.16's code paths, on identical random inputs.

TRL computes advantages inside ``GRPOTrainer._generate_and_score_completions`` /
``RLOOTrainer._generate_and_score_completions`` (generation, reward calls and gathering in one method),
which cannot be called standalone. The tests replay TRL's advantage lines verbatim with TRL's own
``nanstd`` and first assert that those lines are still in the installed TRL source, so a TRL change shows
up as a failure here rather than as a silently stale copy.
TRL's ``nanstd`` forms Bessel's factor count/(count − 1) from integer counts, i.e. in torch's default
dtype; the tests set the default dtype to float64 while TRL's lines run, else that factor alone is off by
~1e-8 (float32 rounding) and hides everything else.
Observed max abs differences (float64): GRPO group/batch/none 2.2e-16 / 4.4e-16 / 4.4e-16, RLOO (β·k1 in the reward,
without / with normalize_advantages) 2.2e-16 / 4.4e-16.
"""

import importlib.util
from pathlib import Path

import pytest
import torch

from alignrl.advantages.base import AdvantageInputs, contiguous_groups
from alignrl.advantages.grpo import GRPOParams, grpo_advantages
from alignrl.advantages.rloo import RLOOParams, rloo_advantages

F64 = torch.float64
TOL = 1e-14


def _trl_source(name: str) -> str:
    spec = importlib.util.find_spec("trl")
    if spec is None or spec.origin is None:
        pytest.skip("trl is not installed")
    return " ".join((Path(spec.origin).parent / "trainer" / name).read_text().split())


@pytest.fixture(scope="module")
def nanstd():
    return pytest.importorskip("trl.trainer.utils").nanstd


@pytest.fixture
def float64_default():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _assert_lines(source: str, lines: list[str]) -> None:
    for line in lines:
        assert " ".join(line.split()) in source, f"TRL no longer contains: {line}"


def _trl_grpo(rewards_per_func, reward_weights, num_generations, scale_rewards, nanstd):
    # GRPOTrainer._generate_and_score_completions, multi_objective_aggregation="sum_then_normalize" (TRL 1.16)
    rewards = (rewards_per_func * reward_weights.unsqueeze(0)).nansum(dim=1)
    mean_grouped_rewards = torch.nanmean(rewards.view(-1, num_generations), dim=1)
    mean_grouped_rewards = mean_grouped_rewards.repeat_interleave(num_generations, dim=0)
    if scale_rewards in ["group", "none"]:
        std_rewards = nanstd(rewards.view(-1, num_generations), dim=1)
        std_rewards = std_rewards.repeat_interleave(num_generations, dim=0)
    else:  # "batch"
        std_rewards = nanstd(rewards).expand_as(rewards)
    advantages = rewards - mean_grouped_rewards
    if scale_rewards != "none":
        advantages = advantages / (std_rewards + 1e-4)
    return rewards, advantages


@pytest.mark.parametrize("scale_rewards", ["group", "batch", "none"])
def test_grpo_matches_trl(scale_rewards, nanstd, float64_default):
    _assert_lines(_trl_source("grpo_trainer.py"), [
        "rewards = (rewards_per_func * self.reward_weights.to(device).unsqueeze(0)).nansum(dim=1)",
        "mean_grouped_rewards = torch.nanmean(rewards.view(-1, num_generations), dim=1)",
        "std_rewards = nanstd(rewards.view(-1, num_generations), dim=1)",
        "std_rewards = nanstd(rewards).expand_as(rewards)",
        "advantages = rewards - mean_grouped_rewards",
        "advantages = advantages / (std_rewards + 1e-4)",
    ])
    torch.manual_seed(0)
    B, G, T = 32, 8, 6
    rewards_per_func = torch.randn(B, 3, dtype=F64)
    rewards_per_func[:G] = 1.0  # one group with identical rewards: std 0
    weights = torch.tensor([1.0, 0.5, -0.25], dtype=F64)
    rewards, trl_adv = _trl_grpo(rewards_per_func, weights, G, scale_rewards, nanstd)
    p = GRPOParams(scale_std=scale_rewards != "none", std_scope="batch" if scale_rewards == "batch" else "group",
                   unbiased_std=True, eps=1e-4)
    mask = torch.ones(B, T, dtype=torch.bool)
    ours = grpo_advantages(AdvantageInputs(rewards=rewards, mask=mask, group_index=contiguous_groups(B, G)), p)
    diff = (ours.adv - trl_adv[:, None]).abs().max().item()
    assert diff <= TOL, diff


def _trl_rloo(rewards, per_token_kl, completion_mask, beta, num_generations, normalize_advantages, nanstd):
    # RLOOTrainer._generate_and_score_completions (TRL 1.16), all completions scorable
    kl = (per_token_kl * completion_mask).sum(-1)
    rewards = rewards - beta * kl
    grouped_rewards = rewards.view(-1, num_generations)
    scorable_counts = (~torch.isnan(grouped_rewards)).sum(dim=1, keepdim=True)
    grouped_sum = torch.nansum(grouped_rewards, dim=1, keepdim=True)
    baselines = (grouped_sum - grouped_rewards) / (scorable_counts - 1)
    advantages = rewards - baselines.view(-1)
    if normalize_advantages:
        advantages = (advantages - torch.nanmean(advantages)) / (nanstd(advantages) + 1e-4)
    return torch.nan_to_num(advantages, nan=0.0)


@pytest.mark.parametrize("normalize", [False, True])
def test_rloo_matches_trl_with_kl_in_reward(normalize, nanstd, float64_default):
    _assert_lines(_trl_source("rloo_trainer.py"), [
        "per_token_kl = old_per_token_logps - ref_per_token_logps",
        "kl = (per_token_kl * completion_mask).sum(-1)",
        "rewards = rewards - self.beta * kl",
        "baselines = (grouped_sum - grouped_rewards) / (scorable_counts - 1)",
        "advantages = rewards - baselines",
        "advantages = (advantages - torch.nanmean(advantages)) / (nanstd(advantages) + 1e-4)",
    ])
    torch.manual_seed(1)
    B, G, T, beta = 24, 4, 7, 0.05
    rewards = torch.randn(B, dtype=F64)
    logp_old, logp_ref = -torch.rand(B, T, dtype=F64) * 3, -torch.rand(B, T, dtype=F64) * 3
    mask = torch.rand(B, T) > 0.25
    trl_adv = _trl_rloo(rewards, logp_old - logp_ref, mask.to(F64), beta, G, normalize, nanstd)
    # KL in the reward as dense token rewards −β·k1_t (k1 = logp_old − logp_ref)
    x = AdvantageInputs(rewards=rewards, mask=mask, token_rewards=-beta * (logp_old - logp_ref),
                        group_index=contiguous_groups(B, G))
    ours = rloo_advantages(x, RLOOParams(whiten=normalize, eps=1e-4))
    diff = (ours.adv - trl_adv[:, None] * mask).abs().max().item()
    assert diff <= TOL, diff
