"""Reward terms on the real stack: an online-RL run scored by the verifier, a 2-member reward-model ensemble on a
RewardWorker actor (WCO) and a user function, for a few GRPO steps on a tiny model; and the RewardWorker's scores
against the same models run here."""

from __future__ import annotations

import math

import pytest
import torch

from alignrl.cli import main
from alignrl.tracking import read_metrics

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def reward_models(tmp_path_factory, tiny_model_dir):
    """Two reward models on the tiny backbone whose scalar heads differ by seed (untrained: scores differ)."""
    from alignrl.loops.reward_model import build_reward_init

    out = tmp_path_factory.mktemp("rms")
    return [build_reward_init(tiny_model_dir, out / f"rm{seed}", seed) for seed in (0, 1)]


def test_ensemble_verifier_and_function_rewards_in_a_grpo_run(tmp_path, tiny_model_dir, reward_models):
    fn = tmp_path / "lengths.py"
    fn.write_text("def score(prompts, completions, answers):\n    return [-0.1 * len(c) for c in completions]\n")
    recipe = tmp_path / "rl.yaml"
    recipe.write_text(f"""\
name: rl-rewards
policy: {{path: {tiny_model_dir}}}
algorithm: {{name: grpo, group_size: 4}}
rewards:
  - {{kind: verifier, weight: 1.0}}
  - {{kind: ensemble, name: rm, paths: [{reward_models[0]}, {reward_models[1]}], aggregate: wco, weight: 0.5,
     normalize: running, cpus: 0.25, max_length: 32}}
  - {{kind: function, name: brevity, function: "{fn}:score", weight: 1.0}}
data: {{train: "tasks://arithmetic?digits=1&n=100&split=train"}}
rollout: {{engine: hf, max_new_tokens: 3, cpus_per_worker: 0.25}}
learner: {{micro_batch_size: 16, lr: 1.0e-3, cpus_per_worker: 1}}
train: {{steps: 2, batch_size: 16, max_length: 16, log_every: 1, eval_every: 0, checkpoint_every: 0}}
""")
    assert main(["run", str(recipe), f"output_dir={tmp_path}", "--no-progress"]) == 0
    records = [r for r in read_metrics(tmp_path / "rl-rewards" / "metrics.jsonl") if "train/loss" in r]
    assert len(records) == 2
    for r in records:
        members = [r["train/reward/rm/member0"], r["train/reward/rm/member1"]]
        assert members[0] != members[1] and r["train/reward/rm/disagreement"] > 0
        assert r["train/reward/rm"] <= min(members) + 1e-6  # WCO: the per-completion minimum, so below both means
        assert -0.1 * 3 - 1e-6 <= r["train/reward/brevity"] < 0  # completions of 1..3 characters
        assert 0.0 <= r["train/reward/verifier"] <= 1.0 and r["train/reward/verifier"] == r["train/accuracy"]
        assert all(math.isfinite(v) for v in r.values() if isinstance(v, float))


def test_reward_worker_scores_equal_the_models_run_here(reward_models):
    from transformers import AutoModelForSequenceClassification

    from alignrl.actors.cluster import ray_session
    from alignrl.actors.reward import RewardModels
    from alignrl.data.collate import collate_sft, tokenize_scored
    from alignrl.models.loading import load_tokenizer

    prompts, completions = ["1+2=", "3+4=", "9+9="], ["3", "8", "18"]
    with ray_session(num_cpus=2):
        handle = RewardModels("rm", [str(d) for d in reward_models], max_length=32, micro_batch_size=2, cpus=0.5)
        try:
            remote = handle.get(handle.score_async(prompts, completions), "scoring")
        finally:
            handle.shutdown()
    assert remote.shape == (2, 3)
    for k, folder in enumerate(reward_models):
        model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
        tok = load_tokenizer(folder)
        batch = collate_sft([tokenize_scored(tok, p, c, 32) for p, c in zip(prompts, completions)], tok.pad_token_id)
        with torch.no_grad():
            local = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, 0]
        torch.testing.assert_close(remote[k], local, rtol=1e-5, atol=1e-5)
