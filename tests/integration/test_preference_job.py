"""Preference jobs on the real stack (Ray + DeepSpeed, tiny model): a frozen reference cached as sums, with
shared-prompt rows on two ranks, takes the same steps as a hosted copy with a row per response on one rank;
TR-DPO's hard sync and iterative rounds move the hosted reference as the checkpoints show; online rounds sample,
score and pair."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from alignrl.cli import main
from alignrl.models.export import load_hf_weights

pytestmark = pytest.mark.integration


def _run(tmp_path, model_dir, name: str, algorithm: str) -> tuple:
    recipe = tmp_path / f"{name}.yaml"
    recipe.write_text(f"""\
name: {name}
policy: {{path: {model_dir}}}
algorithm: {algorithm}
data: {{train: "prefs://arithmetic?digits=2&n=200&split=train&gold=exact",
        eval: "tasks://arithmetic?digits=2&n=8&split=test"}}
{"" if "learner:" in algorithm else "learner: {micro_batch_size: 8, lr: 1.0e-3, cpus_per_worker: 1}"}
train: {{steps: 4, batch_size: 8, max_length: 16, log_every: 1, eval_every: 4, checkpoint_every: 0}}
eval: {{n: 8, k: 0, max_new_tokens: 3, pairs: "prefs://arithmetic?digits=2&n=16&split=test&gold=exact"}}
""")
    assert main(["run", str(recipe), f"output_dir={tmp_path}", "--no-progress"]) == 0
    run = tmp_path / name
    ckpt = run / "checkpoints" / "step_000004"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    anchor = ckpt / "anchors" / "ref.safetensors"
    return load_file(str(anchor)) if anchor.is_file() else None, load_hf_weights(ckpt / "hf"), rows


def test_cached_frozen_reference_equals_a_hosted_one_and_tr_dpo_hard_sync_copies_the_policy(tmp_path, tiny_model_dir):
    init = load_hf_weights(tiny_model_dir)
    # frozen + sequence-level loss: the reference sums are computed once, no reference copy is hosted, and each pair
    # is one shared-prompt row; here on two data-parallel learner ranks
    ref, policy, cached = _run(tmp_path, tiny_model_dir, "frozen", "{name: preference, loss: {name: dpo, beta: 0.1}}"
                               "\nlearner: {workers: 2, micro_batch_size: 4, lr: 1.0e-3, cpus_per_worker: 1}")
    assert ref is None and any(not torch.equal(policy[k], init[k]) for k in init)
    # the same run on one rank, one row per response, with a hosted reference that never moves (an EMA with decay 1)
    # takes the same steps
    ref, _, hosted = _run(tmp_path, tiny_model_dir, "hosted",
                          "{name: preference, loss: {name: dpo, beta: 0.1}, reference: ema, ref_decay: 1.0}")
    assert all(torch.equal(ref[k], init[k]) for k in init)
    train_c, train_h = ([r for r in rows if "train/loss" in r] for rows in (cached, hosted))
    assert len(train_c) == 4 and train_c[0]["train/kl_ref"] == pytest.approx(0.0, abs=1e-4)  # π_θ = π_ref at step 1
    assert [r["train/loss"] for r in train_c] == pytest.approx([r["train/loss"] for r in train_h], abs=1e-5)
    assert {"train/reward_accuracy", "train/reward_margin", "train/logp_chosen", "train/loss/dpo"} <= set(train_c[-1])
    # held-out pairs: the same numbers whether the reference is cached or hosted; no margin before the first step
    evals_c, evals_h = ([r for r in rows if "eval/pair_margin" in r] for rows in (cached, hosted))
    assert [r["step"] for r in evals_c] == [0, 4] and evals_c[0]["eval/pair_margin"] == pytest.approx(0.0, abs=1e-5)
    for key in ("eval/pair_accuracy", "eval/pair_margin", "eval/loss", "eval/logp_chosen"):
        assert evals_c[-1][key] == pytest.approx(evals_h[-1][key], abs=1e-4), key
    assert evals_c[-1]["eval/pairs"] == 8 and "eval/accuracy" in evals_c[-1]  # the first eval.n of 16 pairs
    # α = 1, τ = 2: the reference is the policy after steps 2 and 4; the run ends on a sync
    ref, policy, _ = _run(tmp_path, tiny_model_dir, "trdpo",
                          "{name: preference, loss: ipo, reference: tr_dpo, ref_alpha: 1.0, ref_sync_steps: 2}")
    assert all(torch.equal(ref[k], policy[k]) for k in policy if k in ref)
    assert any(not torch.equal(ref[k], init[k]) for k in init)


def test_online_rounds_sample_score_pair_and_move_the_reference(tmp_path, tiny_model_dir):
    recipe = tmp_path / "online.yaml"
    recipe.write_text(f"""\
name: online
policy: {{path: {tiny_model_dir}}}
algorithm: {{name: preference, loss: dpo, nll_weight: 0.5, reference: previous_round, rounds: 2, online: true,
            samples_per_prompt: 4, prompts_per_round: 16}}
rewards: [{{kind: verifier}}, {{kind: function, function: "{_length_reward(tmp_path)}:score", weight: 0.1}}]
data: {{train: "tasks://arithmetic?digits=1&n=60&split=train", eval: "tasks://arithmetic?digits=1&n=8&split=test"}}
rollout: {{engine: hf, max_new_tokens: 3, cpus_per_worker: 0.5}}
learner: {{micro_batch_size: 8, lr: 1.0e-3, cpus_per_worker: 1}}
train: {{steps: 2, batch_size: 8, max_length: 16, log_every: 1, eval_every: 0, checkpoint_every: 2}}
eval: {{n: 8, k: 0, max_new_tokens: 3}}
""")
    assert main(["run", str(recipe), f"output_dir={tmp_path}", "--no-progress"]) == 0
    run = tmp_path / "online"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rounds = [r for r in rows if "round/pairs" in r]
    assert [r["round/index"] for r in rounds] == [0.0, 1.0]
    assert all(0 < r["round/pairs"] <= 16 and "round/reward/function" in r for r in rounds)
    assert [r["step"] for r in rows if "eval/accuracy" in r] == [2, 4]  # each round ends with an evaluation
    # the reference during round 2 is the policy as round 1 ended (step 2), and moves again at step 4
    step2 = load_hf_weights(run / "checkpoints" / "step_000002" / "hf")
    ref2 = load_file(str(run / "checkpoints" / "step_000002" / "anchors" / "ref.safetensors"))
    assert all(torch.equal(ref2[k], step2[k]) for k in step2 if k in ref2)


def _length_reward(tmp_path) -> str:
    path = tmp_path / "length.py"
    path.write_text("def score(prompts, completions, answers):\n    return [-len(c) for c in completions]\n")
    return str(path)


def test_lora_policy_with_a_tr_dpo_reference(tmp_path, tiny_model_dir):
    init = load_hf_weights(tiny_model_dir)
    ref, policy, rows = _run(tmp_path, tiny_model_dir, "lora",
                             "{name: preference, loss: dpo, reference: tr_dpo, ref_alpha: 1.0, ref_sync_steps: 4}"
                             "\nlearner: {micro_batch_size: 8, lr: 1.0e-2, cpus_per_worker: 1, "
                             "lora: {r: 4, alpha: 8, target_modules: [q_proj, v_proj]}}")
    # the exported policy has the adapters merged into the targeted weights only
    changed = {k for k in init if not torch.equal(policy[k], init[k])}
    assert changed and all(k.endswith(("q_proj.weight", "v_proj.weight")) for k in changed)
    assert [r["step"] for r in rows if "eval/pair_margin" in r] == [0, 4]
    assert ref is not None  # the hosted reference (a copy of the adapted model) was checkpointed


def _sums(model, pairs):
    from alignrl.loops.reward_model import collate_pairs
    from alignrl.ops import token_logprobs

    batch = collate_pairs(pairs, pad_id=0)
    with torch.no_grad():
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    return (token_logprobs(logits, batch.input_ids) * batch.loss_mask).sum(1)


def test_dpkd_with_a_teacher_and_dpo_with_a_soup_reference(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from alignrl.data.sources import load_preference_examples
    from alignrl.loops.reward_model import tokenize_pairs
    from alignrl.models.loading import load_tokenizer
    from alignrl.models.tiny import build_tiny_model

    teachers = [build_tiny_model(tmp_path / f"teacher{i}", seed=i + 1) for i in range(2)]
    _, _, dpkd = _run(tmp_path, tiny_model_dir, "dpkd",
                      f"{{name: preference, loss: dpkd, reference: model, reference_paths: [{teachers[0]}]}}")
    _, _, soup = _run(tmp_path, tiny_model_dir, "soup",
                      f"{{name: preference, loss: dpo, reference: model, reference_paths: [{teachers[0]}, "
                      f"{teachers[1]}], reference_weights: [0.25, 0.75]}}")
    # before the first step the held-out margin is that of log π_start − log π_ref, with π_ref the teacher or the
    # 0.25/0.75 average of the two teachers' weights
    tok = load_tokenizer(tiny_model_dir)
    pairs = tokenize_pairs(tok, load_preference_examples("prefs://arithmetic?digits=2&n=16&split=test&gold=exact")[:8],
                           16, "pairs")
    load = lambda d: AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()  # noqa: E731
    start, t0, t1 = load(tiny_model_dir), load(teachers[0]), load(teachers[1])
    t1.load_state_dict({k: 0.25 * v + 0.75 * t1.state_dict()[k] for k, v in t0.state_dict().items()})
    for rows, reference in ((dpkd, t0), (soup, t1)):
        rho = _sums(start, pairs) - _sums(reference, pairs)
        first = next(r for r in rows if "eval/pair_margin" in r)
        margin = rho[0::2] - rho[1::2]
        assert first["step"] == 0 and float(rho.abs().mean()) > 0.1  # the reference is not the start
        assert first["eval/pair_margin"] == pytest.approx(float(margin.mean()), abs=1e-4)
        assert first["eval/pair_accuracy"] == pytest.approx(float((margin > 0).float().mean()))
    assert [r["train/loss/dpkd"] for r in dpkd if "train/loss/dpkd" in r][0] > 0


def test_a_reference_model_with_another_tokenizer_is_refused(tmp_path, tiny_model_dir):
    from alignrl.models.tiny import build_tiny_model

    other = build_tiny_model(tmp_path / "other", chars="0123456789+=")
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(f"""\
name: bad
policy: {{path: {tiny_model_dir}}}
algorithm: {{name: preference, loss: dpkd, reference: model, reference_paths: [{other}]}}
data: {{train: "prefs://arithmetic?digits=2&n=200&split=train&gold=exact"}}
train: {{steps: 2, batch_size: 8, max_length: 16}}
""")
    assert main(["run", str(recipe), f"output_dir={tmp_path}", "--no-progress"]) == 2
    assert not (tmp_path / "bad" / "checkpoints").exists()
