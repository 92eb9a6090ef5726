"""Soak: a GRPO run with 2 rollout workers and 2 data-parallel learners for 300 steps on a fresh tiny model, its
whole process tree's memory (the driver, Ray's own processes, every actor) sampled every 50 ms together with the
step the run has logged. It must finish (no deadlock: a hard timeout) and the memory must not creep: the median
of the samples taken during the last quarter of the steps may exceed that of the second quarter by at most
RSS_GROWTH_MB (a steady leak of even 0.5 MB a step would show as 75 MB)."""

import json
import statistics
import subprocess
import sys
import threading

import psutil
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

STEPS = 300
RSS_GROWTH_MB = 60.0
TIMEOUT_S = 900


def _tree_rss_mb(root: psutil.Process) -> float:
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except psutil.Error:  # a process that just ended
            pass
    return total / 2**20


def test_three_hundred_steps_finish_without_memory_growth(tmp_path):
    recipe = tmp_path / "soak.yaml"
    recipe.write_text(
        "name: soak\nseed: 0\npolicy: {tiny: {hidden: 64, layers: 2, heads: 2, max_positions: 32}}\n"
        "algorithm: {name: grpo, group_size: 4, entropy_coef: 0.01}\n"
        "anchors: [{model: init, estimator: k3, coef: 0.05, cpus: 0.2}]\n"
        "data: {train: 'tasks://arithmetic?digits=1&n=400&split=train'}\n"
        "rollout: {engine: hf, workers: 2, max_new_tokens: 3, cpus_per_worker: 0.2}\n"
        "learner: {workers: 2, micro_batch_size: 8, lr: 1.0e-3, cpus_per_worker: 0.5}\n"
        f"train: {{steps: {STEPS}, batch_size: 16, max_length: 16, log_every: 1, checkpoint_every: 0}}\n"
        "export: {enabled: false}\n")
    cmd = [sys.executable, "-m", "alignrl", "run", "--no-progress", str(recipe), f"output_dir={tmp_path}"]
    metrics = tmp_path / "soak" / "metrics.jsonl"
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    root, samples, done = psutil.Process(proc.pid), [], threading.Event()

    def sample():
        while not done.wait(0.05):
            step = metrics.read_bytes().count(b"\n") if metrics.is_file() else 0  # one record per step
            samples.append((step, _tree_rss_mb(root)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"the soak run did not finish within {TIMEOUT_S} s (deadlock?)")
    finally:
        done.set()
        sampler.join()
    assert proc.returncode == 0, out[-3000:]
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert len([r for r in records if "train/loss" in r]) == STEPS
    q = STEPS // 4
    second = [mb for step, mb in samples if q < step <= 2 * q]
    last = [mb for step, mb in samples if 3 * q < step < STEPS]
    assert len(second) >= 10 and len(last) >= 10, (len(second), len(last))
    second_mb, last_mb = statistics.median(second), statistics.median(last)
    print(f"soak: {STEPS} steps, tree RSS median {second_mb:.0f} MB (steps {q + 1}-{2 * q}) -> {last_mb:.0f} MB "
          f"(steps {3 * q + 1}-{STEPS - 1}), {len(samples)} samples")
    assert last_mb - second_mb < RSS_GROWTH_MB, (second_mb, last_mb)
