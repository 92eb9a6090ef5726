"""The preference job's micro-loss on a tiny model: sequence sums per pair, the DPO value by hand, the reference
read from log-probs or (TDPO) logits alike, and the RPO NLL term."""

import math

import pytest
import torch

from alignrl.data.collate import TokenizedExample, collate_sft
from alignrl.loops.preference import preference_micro_loss, reference_spec
from alignrl.objectives.dpo import DPOParams
from alignrl.objectives.preference_job import PreferenceJobParams, WeightedPreferenceLoss
from alignrl.ops import token_logprobs
from alignrl.registry import Component
from alignrl.types import RolloutBatch


@pytest.fixture(scope="module")
def model_and_batch(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    policy = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    reference = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    with torch.no_grad():  # a reference that differs from the policy
        for p in reference.parameters():
            p.add_(0.05 * torch.randn_like(p))
    rows = [TokenizedExample((1, 10, 11, 12, 20, 21, 2), 4), TokenizedExample((1, 10, 11, 12, 22, 2), 4),
            TokenizedExample((1, 13, 14, 25, 2), 3), TokenizedExample((1, 13, 14, 26, 27, 28, 2), 3)]
    tokens = collate_sft(rows, pad_id=0)
    with torch.no_grad():
        ref_logits = reference(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask).logits
    return policy, tokens, ref_logits


def _by_hand(policy, tokens, ref_logits, beta):
    logits = policy(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask).logits
    m = tokens.loss_mask
    pol = (token_logprobs(logits, tokens.input_ids) * m).sum(1)
    ref = (token_logprobs(ref_logits, tokens.input_ids) * m).sum(1)
    h = (pol[0::2] - ref[0::2]) - (pol[1::2] - ref[1::2])
    return -torch.nn.functional.logsigmoid(beta * h).mean(), pol, m


def test_dpo_micro_loss_equals_the_formula_and_adds_the_nll(model_and_batch):
    policy, tokens, ref_logits = model_and_batch
    ref_logp = token_logprobs(ref_logits, tokens.input_ids)
    batch = RolloutBatch(tokens, {"anchor_logp/ref": ref_logp})
    expected, pol, m = _by_hand(policy, tokens, ref_logits, beta=0.3)
    p = PreferenceJobParams(loss=Component("dpo", DPOParams(beta=0.3)))
    out = preference_micro_loss(policy, batch, p)
    assert float(out.loss) == pytest.approx(float(expected), rel=1e-5)
    nll = float((-pol[0::2] / m[0::2].sum(1)).mean())
    with_nll = preference_micro_loss(policy, batch, PreferenceJobParams(loss=p.loss, nll_weight=0.5))
    assert float(with_nll.loss) == pytest.approx(float(expected) + 0.5 * nll, rel=1e-5)
    assert float(with_nll.metrics["nll_chosen"]) == pytest.approx(nll, rel=1e-5)


def test_reference_logits_give_the_same_sums_and_tdpo_its_token_kl(model_and_batch):
    policy, tokens, ref_logits = model_and_batch
    from_logp = preference_micro_loss(policy, RolloutBatch(tokens, {"anchor_logp/ref": token_logprobs(
        ref_logits, tokens.input_ids)}), PreferenceJobParams())
    from_logits = preference_micro_loss(policy, RolloutBatch(tokens, {"anchor_logits/ref": ref_logits}),
                                        PreferenceJobParams())
    assert float(from_logits.loss) == pytest.approx(float(from_logp.loss), rel=1e-5)
    tdpo = PreferenceJobParams(loss=Component("tdpo1", None),
                               extra_losses=(WeightedPreferenceLoss(loss=Component("dpo", None), weight=2.0),))
    out = preference_micro_loss(policy, RolloutBatch(tokens, {"anchor_logits/ref": ref_logits}), tdpo)
    assert float(out.metrics["seq_kl_chosen"]) > 0 and math.isfinite(float(out.loss))
    assert float(out.loss) == pytest.approx(float(out.metrics["loss/tdpo1"]) + 2.0 * float(out.metrics["loss/dpo"]),
                                            rel=1e-5)


def test_reference_rules():
    assert reference_spec(PreferenceJobParams()).params.decay == 1.0  # frozen: an EMA that never moves
    assert reference_spec(PreferenceJobParams(reference="ema", ref_decay=0.9)).params.decay == 0.9
    tr = reference_spec(PreferenceJobParams(reference="tr_dpo", ref_alpha=0.5, ref_sync_steps=8))
    assert (tr.rule, tr.params.alpha, tr.params.sync_steps, tr.full) == ("tr_dpo", 0.5, 8, False)
    assert reference_spec(PreferenceJobParams(loss=Component("tdpo2", None))).full


def test_best_worst_pairs_per_prompt_with_a_margin():
    from alignrl.loops.preference import best_worst_pairs

    prompts = ["a", "a", "a", "b", "b", "b", "c", "c", "c"]
    texts = ["a0", "a1", "a2", "b0", "b1", "b2", "c0", "c1", "c2"]
    rewards = torch.tensor([0.2, 1.0, 0.0, 0.5, 0.5, 0.5, 0.4, 0.6, 0.5])
    pairs = best_worst_pairs(prompts, texts, rewards, 3, margin=0.0)
    assert [(p.prompt, p.chosen, p.rejected) for p in pairs] == [("a", "a1", "a2"), ("c", "c1", "c0")]  # b: all tied
    assert [p.prompt for p in best_worst_pairs(prompts, texts, rewards, 3, margin=0.5)] == ["a"]
