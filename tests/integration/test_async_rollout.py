"""Asynchronous rollout (rollout.max_staleness: 2) on the real stack: the rollout worker generates up to two steps
ahead while the learner trains; every batch's staleness is logged and bounded by 2, stale batches train with
decoupled PPO and sequence-level truncated importance weights, and the run ends with the pipeline drained."""

import pytest

from alignrl.cli import main
from alignrl.tracking import read_metrics

pytestmark = pytest.mark.integration

RECIPE = """\
name: async
seed: 1
policy: {tiny: {hidden: 64, layers: 2, heads: 2, max_positions: 32}}
algorithm: {name: grpo, group_size: 4, tis_cap: 2.0, tis_level: sequence, entropy_coef: 0.05}
data: {train: "tasks://arithmetic?digits=1&n=200&split=train"}
rollout: {engine: hf, max_new_tokens: 3, cpus_per_worker: 0.5, max_staleness: 2}
learner: {micro_batch_size: 8, lr: 1.0e-2, cpus_per_worker: 1}
train: {steps: 8, batch_size: 16, max_length: 16, log_every: 1, eval_every: 0, checkpoint_every: 4}
"""


def test_staleness_is_bounded_logged_and_corrected(tmp_path):
    recipe = tmp_path / "async.yaml"
    recipe.write_text(RECIPE)
    assert main(["run", str(recipe), f"output_dir={tmp_path}", "--no-progress"]) == 0
    steps = {r["step"]: r for r in read_metrics(tmp_path / "async" / "metrics.jsonl") if "train/loss" in r}
    assert sorted(steps) == list(range(1, 9))
    stale = {s: steps[s]["train/staleness"] for s in steps}
    assert all(0 <= v <= 2 for v in stale.values()), stale
    # steps 1 and 5 follow a drain (the start, the checkpoint at 4): their batches are sampled synchronously
    assert stale[1] == stale[5] == 0
    # the generator ran ahead: the batch of step 2 was sampled while step 1 trained (1 step stale)
    assert max(stale.values()) >= 1, stale
    for s, r in steps.items():
        assert r["train/off_policy"] == float(stale[s] > 0)
        assert 0 < r["train/tis_weight_mean"] <= 2.0  # truncated at C = 2
        # a stale batch reports the drift since sampling, a fresh one the engines' numerical mismatch only
        assert ("train/logp_offpolicy_diff_mean" in r) == (stale[s] > 0)
    fresh = [steps[s]["train/logp_mismatch_mean"] for s in steps if stale[s] == 0]
    drift = [steps[s]["train/logp_offpolicy_diff_mean"] for s in steps if stale[s] > 0]
    assert max(fresh) < 1e-3 < min(drift)  # the entropy bonus at lr 1e-2 moves the policy visibly each step
