"""Distillation inside the online-RL loop: the top-k teacher anchor term, the reward-free ``distill``
algorithm, GKD's λ schedule and the gold-completion batches."""

import math

import pytest
import torch

from alignrl.loops.online_rl import _gold, student_step
from alignrl.objectives.online_rl import (
    AnchorTerm,
    DistillAlgoParams,
    full_anchor_divergence,
    online_rl_loss,
    topk_anchor_divergence,
)
from alignrl.tasks.base import Example


def _teacher_topk(anchor_logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """What ScorerWorker.topk_logprobs sends: position t holds the distribution of token t (logits t - 1)."""
    top, idx = anchor_logits[:, :-1].log_softmax(-1).topk(k, dim=-1)
    pad = lambda t: torch.nn.functional.pad(t, (0, 0, 1, 0))  # noqa: E731
    return pad(top), pad(idx)


@pytest.mark.parametrize("divergence", ["reverse_kl", "forward_kl", "js", "tv", "generalized_jsd", "skew_kl",
                                        "skew_reverse_kl", "akl"])
def test_topk_anchor_with_the_whole_vocabulary_equals_the_exact_divergence(divergence):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 5, 9, generator=g, dtype=torch.float64)
    anchor = torch.randn(3, 5, 9, generator=g, dtype=torch.float64)
    top, idx = _teacher_topk(anchor, 9)
    got = topk_anchor_divergence(logits, top, idx, divergence)
    assert got.shape == (3, 5) and torch.all(got[:, 0] == 0)
    assert torch.allclose(got, full_anchor_divergence(logits, anchor, divergence), atol=1e-12)


def test_topk_anchor_with_fewer_tokens_is_a_lower_bound_that_tightens_with_k():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 6, 12, generator=g, dtype=torch.float64)
    anchor = 3 * torch.randn(2, 6, 12, generator=g, dtype=torch.float64)
    exact = full_anchor_divergence(logits, anchor, "reverse_kl")[:, 1:]
    by_k = [topk_anchor_divergence(logits, *_teacher_topk(anchor, k), "reverse_kl")[:, 1:] for k in (1, 4, 11)]
    for d in by_k:  # data processing inequality: coarse-graining onto k + 1 buckets cannot raise a KL
        assert torch.all(d <= exact + 1e-8)  # k = 11: one tail token, equal up to the rounding of 1 - sum q
    assert torch.all(by_k[0] <= by_k[1] + 1e-8) and torch.all(by_k[1] <= by_k[2] + 1e-8)
    assert float((exact - by_k[2]).abs().max()) < float((exact - by_k[0]).abs().max())  # not all equal


def test_distill_loss_is_the_teacher_term_alone_and_pulls_the_student_to_the_teacher():
    g = torch.Generator().manual_seed(3)
    b, t, v = 2, 5, 7
    ids = torch.randint(0, v, (b, t), generator=g)
    mask = torch.zeros(b, t, dtype=torch.bool)
    mask[:, 2:] = True
    teacher = torch.randn(b, t, v, generator=g, dtype=torch.float64)
    top, idx = _teacher_topk(teacher, 3)
    logits = torch.randn(b, t, v, generator=g, dtype=torch.float64, requires_grad=True)
    logp = logits.log_softmax(-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    rows = {"advantages": torch.full((b, t), 5.0, dtype=torch.float64), "logp_old": logp.detach(),
            "anchor_logp/teacher": torch.zeros(b, t, dtype=torch.float64),
            "anchor_topk_logp/teacher": top, "anchor_topk_index/teacher": idx}
    term = AnchorTerm("teacher", "reverse_kl", "topk", 0.5)
    out = online_rl_loss(logp, mask, rows, DistillAlgoParams(), (term,), logits=logits)
    per_token = topk_anchor_divergence(logits, top, idx, "reverse_kl")
    assert float(out.loss.detach()) == pytest.approx(0.5 * float(per_token.detach()[mask].mean()), rel=1e-12)  # advantages ignored
    assert "anchor/teacher" in out.metrics and "clip_frac" not in str(sorted(out.metrics))
    out.loss.backward()
    with torch.no_grad():  # a small step against the gradient lowers the divergence to the teacher
        moved = logits - 0.1 * logits.grad
    assert float(topk_anchor_divergence(moved, top, idx, "reverse_kl")[mask].mean()) < float(per_token.detach()[mask].mean())


def test_distill_params_check_lmbda():
    assert DistillAlgoParams().policy_loss == "none" and DistillAlgoParams().lmbda == 1.0
    with pytest.raises(ValueError, match="lmbda"):
        DistillAlgoParams(lmbda=1.5)


def test_student_step_follows_lmbda_and_is_a_function_of_seed_and_step():
    assert all(student_step(0, s, 1.0) for s in range(1, 200))
    assert not any(student_step(0, s, 0.0) for s in range(1, 200))
    half = [student_step(0, s, 0.5) for s in range(1, 1001)]
    assert 0.45 < sum(half) / len(half) < 0.55
    assert half == [student_step(0, s, 0.5) for s in range(1, 1001)]  # a resumed run decides alike
    assert half != [student_step(1, s, 0.5) for s in range(1, 1001)]


def test_gold_batches_hold_the_dataset_completion_with_eos_and_the_verifiers_reward():
    from alignrl.models.tiny import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    prompts = [Example(prompt="12+30=", completion="42", answer="42"), Example(prompt="1+1=", completion="3", answer="2")]
    from alignrl.config import RewardConfig
    from alignrl.rewards.combine import RewardSet

    verifier = RewardSet((RewardConfig(),), ("verifier",), "tasks://arithmetic?digits=2", group_size=2)
    batch, scored, completions = _gold(prompts, 2, verifier, tok)
    assert scored.rewards.tolist() == [1.0, 1.0, 0.0, 0.0] and len(completions) == 4
    assert scored.correct.tolist() == [1.0, 1.0, 0.0, 0.0] and scored.metrics == {"train/reward/verifier": 0.5}
    row = batch.tokens.input_ids[0]
    n_prompt = len(tok("12+30=")["input_ids"])
    targets = row[batch.tokens.loss_mask[0]].tolist()
    assert targets == tok("42", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert int(batch.tokens.loss_mask[0, :n_prompt].sum()) == 0
    assert math.isclose(float(batch.rows["logp_rollout"].abs().sum()), 0.0)


@pytest.mark.parametrize("t", [0.3, 0.8, 1.0])
def test_taid_anchor_with_the_whole_vocabulary_equals_the_offline_taid_loss(t):
    """estimator topk with k = V and divergence forward_kl is objectives/taid.py's KL(p_t ‖ q_θ), per token."""
    from alignrl.objectives.distill_base import DistillInputs
    from alignrl.objectives.online_rl import taid_anchor_divergence
    from alignrl.objectives.taid import TAIDParams, taid_per_token

    g = torch.Generator().manual_seed(5)
    logits = torch.randn(2, 6, 9, generator=g, dtype=torch.float64)
    teacher = 2 * torch.randn(2, 6, 9, generator=g, dtype=torch.float64)
    got = taid_anchor_divergence(logits, *_teacher_topk(teacher, 9), t, "forward_kl")
    offline = taid_per_token(DistillInputs(logits=logits[:, :-1], logits_teacher=teacher[:, :-1],
                                           mask=torch.ones(2, 5, dtype=torch.bool)), TAIDParams(t=t))
    assert torch.all(got[:, 0] == 0)
    assert torch.allclose(got[:, 1:], offline, atol=1e-10)


def test_taid_anchor_target_spreads_the_teachers_tail_and_stops_the_gradient():
    from alignrl.objectives.online_rl import taid_anchor_divergence
    from alignrl.objectives.taid import taid_topk_target

    g = torch.Generator().manual_seed(6)
    logits = torch.randn(2, 4, 10, generator=g, dtype=torch.float64, requires_grad=True)
    teacher = 3 * torch.randn(2, 4, 10, generator=g, dtype=torch.float64)
    top, idx = _teacher_topk(teacher, 3)
    target = taid_topk_target(logits[:, :-1], top[:, 1:], idx[:, 1:], 1.0)
    assert not target.requires_grad
    assert torch.allclose(target.exp().sum(-1), torch.ones(2, 3, dtype=torch.float64))
    assert torch.allclose(target.gather(-1, idx[:, 1:]), top[:, 1:])  # t = 1: the teacher's own top-3
    others = target.exp().scatter(-1, idx[:, 1:], 0.0)
    spread = others[others > 0].view(2, 3, 7)
    assert torch.allclose(spread, spread[..., :1].expand_as(spread))  # the tail mass spread evenly
    at_zero = taid_anchor_divergence(logits, top, idx, 0.0, "forward_kl")
    assert torch.allclose(at_zero, torch.zeros_like(at_zero))  # t = 0: the target is the policy itself
    d = taid_anchor_divergence(logits, top, idx, 0.6, "forward_kl")
    d.sum().backward()
    assert logits.grad is not None and float(logits.grad.abs().sum()) > 0
    # the gradient of KL(p_t ‖ q_θ) with p_t constant is (q_θ − p_t) at each position
    q = logits.detach()[:, :-1].softmax(-1)
    p_t = taid_topk_target(logits.detach()[:, :-1], top[:, 1:], idx[:, 1:], 0.6).exp()
    assert torch.allclose(logits.grad[:, :-1], q - p_t, atol=1e-10)


def test_taid_schedules_are_built_per_anchor_and_restored_from_a_checkpoint():
    from alignrl.config import AnchorConfig, TAIDConfig
    from alignrl.loops.online_rl import AnchorPlan, taid_schedules

    plans = [AnchorPlan("init", AnchorConfig()),
             AnchorPlan("teacher", AnchorConfig(model="path", path="x", estimator="topk", divergence=_fkl(),
                                                taid=TAIDConfig(t_start=0.2, alpha=0.1)))]
    fresh = taid_schedules(plans, 100, {})
    assert list(fresh) == ["teacher"] and fresh["teacher"].t == 0.2
    for step, loss in enumerate([1.0, 0.8, 0.6, 0.5]):
        fresh["teacher"].update(loss, step)
    assert fresh["teacher"].t > 0.2
    restored = taid_schedules(plans, 100, {"teacher": fresh["teacher"].state_dict()})
    assert restored["teacher"].state_dict() == fresh["teacher"].state_dict()


def _fkl():
    from alignrl.config import Component

    return Component("forward_kl", None)
