"""Exact resume and learner restarts for the loops other than online RL (SFT, offline and online preference,
reward model): kill -9 of the whole job after a checkpoint or while one is written, then ``alignrl run --resume``:
every step's metrics and the final weights equal an uninterrupted run's (weights, optimizer, LR schedule,
reference, data position, an online round's pairs and reward normalizers restored). A learner worker killed
mid-run restarts the run from its last checkpoint on its own."""

from __future__ import annotations

import os
import signal
import threading
import time

import psutil
import pytest
import torch

from alignrl.cli import main
from alignrl.models.export import load_hf_weights
from alignrl.tracking import read_metrics

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COMMON = """\
seed: 4
policy: {tiny: {hidden: 64, layers: 2, heads: 2, max_positions: 48}}
"""
TRAIN = "train: {steps: %d, batch_size: 8, max_length: 24, log_every: 1, eval_every: 2, checkpoint_every: 1}\n"
RECIPES = {
    # a warm-up then cosine LR: a resume that lost the schedule's position would train with other rates
    "sft": """\
algorithm: {name: sft}
data: {train: "tasks://arithmetic?digits=1&n=100&split=train", eval: "tasks://arithmetic?digits=1&n=4&split=test"}
learner: {micro_batch_size: 8, lr: 1.0e-2, warmup_steps: 2, lr_schedule: cosine, cpus_per_worker: 1}
eval: {n: 4, k: 0, max_new_tokens: 2, engine: hf}
""",
    # the frozen reference's sums come from the starting weights, before the checkpoint is loaded
    "dpo": """\
algorithm: {name: preference, loss: {name: dpo, beta: 0.1}, nll_weight: 0.5}
data: {train: "prefs://arithmetic?digits=1&n=100&split=train&gold=exact"}
learner: {micro_batch_size: 8, lr: 1.0e-2, cpus_per_worker: 1}
eval: {n: 8, pairs: "prefs://arithmetic?digits=1&n=8&split=test&gold=exact"}
""",
    # killed inside round 0 (3 steps a round): the round's pairs and the reward normalizers come from the checkpoint
    "online_dpo": """\
algorithm: {name: preference, loss: dpo, nll_weight: 0.5, reference: previous_round, rounds: 2, online: true,
            samples_per_prompt: 4, prompts_per_round: 8}
rewards: [{kind: verifier}, {kind: function, function: "LENGTH:score", weight: 0.1, normalize: running}]
data: {train: "tasks://arithmetic?digits=1&n=60&split=train"}
rollout: {engine: hf, max_new_tokens: 2, temperature: 1.0, cpus_per_worker: 0.5}
learner: {micro_batch_size: 8, lr: 1.0e-2, cpus_per_worker: 1}
""",
    "reward_model": """\
algorithm: {name: bradley_terry}
data: {train: "prefs://arithmetic?digits=1&n=100&split=train&gold=exact",
       eval: "prefs://arithmetic?digits=1&n=16&split=test&gold=exact"}
learner: {micro_batch_size: 8, lr: 1.0e-2, cpus_per_worker: 1}
eval: {n: 16}
""",
}
VOLATILE = ("time", "time/")


def _records(run):
    """Every metrics record but notes, keyed by (step, its keys), wall-clock readings dropped."""
    out = {}
    for r in read_metrics(run / "metrics.jsonl"):
        if "note" not in r:
            kept = {k: v for k, v in r.items() if not k.startswith(VOLATILE)}
            out[(r["step"], tuple(sorted(kept)))] = kept
    return out


def _write(tmp_path, loop: str):
    recipe = tmp_path / f"{loop}.yaml"
    length = tmp_path / "length.py"  # a random tiny model earns no verifier reward: answers differ in length
    length.write_text("def score(prompts, completions, answers):\n    return [float(len(c)) for c in completions]\n")
    text = COMMON + RECIPES[loop].replace("LENGTH", str(length)) + TRAIN % (3 if loop == "online_dpo" else 5)
    recipe.write_text(text)
    return recipe


def _final_weights(run):
    return load_hf_weights(max((run / "checkpoints").glob("step_*")) / "hf")


@pytest.mark.parametrize("loop,moment", [("sft", "mid_checkpoint"), ("dpo", "after_checkpoint"),
                                         ("online_dpo", "after_checkpoint"), ("reward_model", "mid_checkpoint")])
def test_kill_minus_nine_then_resume_equals_the_uninterrupted_run(tmp_path, loop, moment, killed_and_resumed):
    recipe = _write(tmp_path, loop)
    assert main(["run", str(recipe), f"output_dir={tmp_path}", "name=full", "--no-progress"]) == 0
    killed = killed_and_resumed(recipe, tmp_path, moment)
    full, resumed = _records(tmp_path / "full"), _records(killed)
    steps = sorted({step for step, keys in full if "train/loss" in keys})
    assert steps == list(range(1, 7 if loop == "online_dpo" else 6))
    assert sorted(resumed) == sorted(full)
    for key in full:
        assert resumed[key] == full[key], key
    a, b = _final_weights(tmp_path / "full"), _final_weights(killed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    start = load_hf_weights(killed / ("init_rm" if loop == "reward_model" else "init"))
    assert any(not torch.equal(a[k], start[k]) for k in a)  # training moved the weights: the equality has teeth


def _kill_learner_after(run_dir, step: int) -> threading.Thread:
    """A thread that SIGKILLs this process's (single) LearnerWorker once checkpoint ``step`` of ``run_dir`` exists."""

    def watch():
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and not (run_dir / "checkpoints" / f"step_{step:06d}").is_dir():
            time.sleep(0.005)
        pids = [p.pid for p in psutil.Process().children(recursive=True)
                if "ray::LearnerWorker" in " ".join(p.cmdline())]
        assert len(pids) == 1, pids
        os.kill(pids[0], signal.SIGKILL)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_a_killed_sft_learner_restarts_the_run_from_its_last_checkpoint(tmp_path):
    recipe = _write(tmp_path, "sft")
    long = ["train.steps=12", "train.checkpoint_every=4"]
    assert main(["run", str(recipe), f"output_dir={tmp_path}", "name=full", *long, "--no-progress"]) == 0
    watcher = _kill_learner_after(tmp_path / "restarted", 4)
    assert main(["run", str(recipe), f"output_dir={tmp_path}", "name=restarted", *long, "--no-progress"]) == 0
    watcher.join(timeout=1)
    run = tmp_path / "restarted"
    notes = [(r["step"], r["note"]) for r in read_metrics(run / "metrics.jsonl") if "note" in r]
    assert len(notes) == 1 and notes[0][0] == 4, notes  # resumed from the checkpoint of step 4
    assert notes[0][1].startswith("learner worker(s) [0] died during ")
    assert notes[0][1].endswith("the run restarted from its last checkpoint (restart 1 of 2)")
    full, restarted = _records(tmp_path / "full"), _records(run)
    assert sorted(restarted) == sorted(full)
    for key in full:
        assert restarted[key] == full[key], key
