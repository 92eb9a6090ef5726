"""`alignrl run --resume`: an online-RL run continued from its checkpoint logs exactly the metrics of an
uninterrupted run with the same seed (weights, optimizer, scheduler, EMA anchor and prompt stream restored;
sampling seeds derive from (seed, step)). The run overlaps generation with training (rollout.overlap), whose
pipeline drains before checkpoint steps, so a resumed run starts the way the uninterrupted one went on."""

import pytest

from alignrl.cli import main
from alignrl.tracking import read_metrics

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RECIPE = """\
name: x
seed: 3
policy: {tiny: {hidden: 64, layers: 2, heads: 2, max_positions: 32}}
algorithm: {name: grpo, group_size: 4, entropy_coef: 0.05}
anchors:
  - {model: ema, decay: 0.5, estimator: k3, coef: 0.1}
  - {model: init, estimator: k2, coef: 0.05, cpus: 0.25}
data: {train: "tasks://arithmetic?digits=1&n=200&split=train", eval: "tasks://arithmetic?digits=1&n=8&split=test"}
rollout: {engine: vllm, max_new_tokens: 3, cpus_per_worker: 0.5, kv_cache_gib: 0.1, overlap: true}
learner: {micro_batch_size: 8, lr: 1.0e-2, cpus_per_worker: 1}
train: {steps: 4, batch_size: 16, max_length: 16, log_every: 1, eval_every: 2, checkpoint_every: 2}
eval: {n: 8, k: 0, max_new_tokens: 3}
"""
VOLATILE = ("time", "time/", "sync/")  # wall-clock readings


def _steps(run):
    out = {}
    for r in read_metrics(run / "metrics.jsonl"):
        if "train/loss" in r:
            out[r["step"]] = {k: v for k, v in r.items() if not k.startswith(VOLATILE)}
    return out


def test_resumed_run_matches_the_uninterrupted_run(tmp_path):
    recipe = tmp_path / "rl.yaml"
    recipe.write_text(RECIPE)
    common = [f"output_dir={tmp_path}", "--no-progress"]
    assert main(["run", str(recipe), "name=full", *common]) == 0
    assert main(["run", str(recipe), "name=cut", "train.steps=2", *common]) == 0
    # as if a kill -9 had hit the writing of a later checkpoint: its temporary folder is left, half full
    partial = tmp_path / "cut" / "checkpoints" / ".step_000003.tmp-999999"
    (partial / "hf").mkdir(parents=True)
    (partial / "hf" / "model.safetensors").write_bytes(b"\0" * 100)
    assert main(["run", "--resume", str(tmp_path / "cut"), "train.steps=4", "--no-progress"]) == 0
    assert not partial.exists()
    assert [r["note"] for r in read_metrics(tmp_path / "cut" / "metrics.jsonl") if "note" in r] == [
        "resuming from step_000002: removed .step_000003.tmp-999999, a checkpoint whose writing was interrupted (the "
        "checkpoints before it are complete)"]
    full, resumed = _steps(tmp_path / "full"), _steps(tmp_path / "cut")
    assert sorted(full) == sorted(resumed) == [1, 2, 3, 4]
    assert full[4]["train/anchor/ema"] > 0  # the policy moved away from its EMA: the comparison has teeth
    for step in (3, 4):
        assert resumed[step] == full[step], step
    # steps 2 and 4 trained on batches generated while steps 1 and 3 trained; the checkpoint step 2 drained
    assert [full[s]["train/off_policy"] for s in (1, 2, 3, 4)] == [0.0, 1.0, 0.0, 1.0]
    evals = lambda run: [(r["step"], r["eval/accuracy"]) for r in read_metrics(run / "metrics.jsonl") if "eval/accuracy" in r]  # noqa: E731
    assert evals(tmp_path / "cut") == evals(tmp_path / "full")
    assert (tmp_path / "cut" / "checkpoints" / "step_000004" / "anchors" / "ema.safetensors").is_file()


def test_resume_refuses_a_finished_run_and_a_non_run_folder(tmp_path, capsys):
    assert main(["run", "--resume", str(tmp_path), "--no-progress"]) == 2
    assert "no recipe.yaml" in capsys.readouterr().err
