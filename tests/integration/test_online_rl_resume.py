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


KILL_RECIPE = RECIPE.replace("engine: vllm, max_new_tokens: 3, cpus_per_worker: 0.5, kv_cache_gib: 0.1, overlap: true",
                             "engine: hf, max_new_tokens: 3, cpus_per_worker: 0.5").replace(
    "steps: 4, batch_size: 16, max_length: 16, log_every: 1, eval_every: 2, checkpoint_every: 2",
    "steps: 5, batch_size: 16, max_length: 16, log_every: 1, eval_every: 0, checkpoint_every: 1")


@pytest.mark.parametrize("moment", ["after_checkpoint", "mid_checkpoint"])
def test_kill_minus_nine_of_the_whole_job_then_resume_matches_the_uninterrupted_run(tmp_path, moment,
                                                                                  killed_and_resumed):
    recipe = tmp_path / "rl.yaml"
    recipe.write_text(KILL_RECIPE)
    assert main(["run", str(recipe), f"output_dir={tmp_path}", "name=full", "--no-progress"]) == 0
    killed = killed_and_resumed(recipe, tmp_path, moment)
    full, resumed = _steps(tmp_path / "full"), _steps(killed)
    assert sorted(resumed) == sorted(full) == [1, 2, 3, 4, 5]
    for step in full:
        assert resumed[step] == full[step], step


LEARNER_KILLER = """
import os
import signal
from pathlib import Path

import psutil

MARK = Path({mark!r})
calls = 0


def score(prompts, completions, answers):
    global calls
    calls += 1
    if calls == 3 and not MARK.exists():  # step 3, before its learner step; once (the restarted run loads us anew)
        MARK.write_text("killed")
        pids = [p.pid for p in psutil.Process().children(recursive=True)  # this run's own Ray processes only
                if "ray::LearnerWorker" in " ".join(p.cmdline())]
        assert len(pids) == 1, pids
        os.kill(pids[0], signal.SIGKILL)
    return [0.0] * len(completions)
"""


def test_a_killed_learner_restarts_the_run_from_its_last_checkpoint(tmp_path):
    recipe = tmp_path / "rl.yaml"
    recipe.write_text(KILL_RECIPE)
    fn = tmp_path / "killer.py"
    fn.write_text(LEARNER_KILLER.format(mark=str(tmp_path / "mark")))
    rewards = f"rewards=[{{kind: verifier}}, {{kind: function, function: '{fn}:score'}}]"
    (tmp_path / "mark").write_text("not this time")  # the uninterrupted run: the same reward terms, no kill
    assert main(["run", str(recipe), f"output_dir={tmp_path}", "name=full", rewards, "--no-progress"]) == 0
    (tmp_path / "mark").unlink()
    assert main(["run", str(recipe), f"output_dir={tmp_path}", "name=restarted", rewards, "--no-progress"]) == 0
    assert (tmp_path / "mark").read_text() == "killed"
    run = tmp_path / "restarted"
    notes = [(r["step"], r["note"]) for r in read_metrics(run / "metrics.jsonl") if "note" in r]
    assert len(notes) == 1 and notes[0][0] == 2, notes  # resumed from the checkpoint of step 2
    assert notes[0][1].startswith("learner worker(s) [0] died during train_step")
    assert notes[0][1].endswith("the run restarted from its last checkpoint (restart 1 of 2)")
    full, restarted = _steps(tmp_path / "full"), _steps(run)
    assert sorted(restarted) == sorted(full) == [1, 2, 3, 4, 5]
    for step in full:
        assert restarted[step] == full[step], step
