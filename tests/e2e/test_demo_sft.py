"""The demo recipe end to end: tiny model -> SFT on the Ray/DeepSpeed learner -> eval -> export.

A learning test: held-out 2-digit addition accuracy must rise from the untrained model's 0% to at
least MIN_ACCURACY (measured: see the issue note; the margin below the measurement is for
machine-to-machine float differences, the seeds are fixed).
"""

import json

import pytest
import torch

from alignrl.cli import main
from alignrl.tracking import read_metrics

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

STEPS = 800  # conftest.DEMO_STEPS
# measured on 300 held-out problems, seed 0: 0.97 at step 800 and 0.42 at 400 on an AVX-512 Xeon (2026-11-26);
# another CPU's float order gave 0.997 with a 600-step schedule. The late, sharp rise moves with the CPU's
# arithmetic, so the bar sits below both measurements and far above the untrained model's 0.
MIN_ACCURACY = 0.9


def test_sft_learns_addition(demo_run):
    result = json.loads((demo_run / "eval.json").read_text())
    assert result["metrics"]["accuracy"] >= MIN_ACCURACY
    assert result["metrics"]["pass@4"] >= result["metrics"]["sample_accuracy"]
    records = read_metrics(demo_run / "metrics.jsonl")
    losses = [r["train/loss"] for r in records if "train/loss" in r]
    assert losses[-1] < 0.5 * losses[0]
    evals = {r["step"]: r["eval/accuracy"] for r in records if "eval/accuracy" in r}
    assert sorted(evals) == [0, 400, STEPS]
    assert evals[0] < 0.05 < evals[400] <= evals[STEPS]  # held-out accuracy rises from the untrained start


def test_run_folder_has_everything(demo_run):
    for name in ("recipe.yaml", "metrics.jsonl", "eval.json", "learning_curves.png", "export/config.json",
                 "export/model.safetensors", "checkpoints/step_000400/hf/model.safetensors",
                 "checkpoints/step_000800/trainer_state.json"):
        assert (demo_run / name).is_file(), name
    assert list((demo_run / "tensorboard").glob("events.out.tfevents.*"))
    assert not [p for p in demo_run.rglob(".*tmp*")], "temporary folders left behind"


def test_export_and_eval_cli_agree_with_the_run(demo_run, tmp_path):
    from safetensors.torch import load_file

    out = tmp_path / "exported"
    assert main(["export", str(demo_run), "-o", str(out)]) == 0
    final = load_file(demo_run / "export" / "model.safetensors")
    exported = load_file(out / "model.safetensors")
    assert final.keys() == exported.keys()
    assert all(torch.equal(final[k], exported[k]) for k in final)

    report = tmp_path / "eval.json"
    assert main(["eval", str(out), "--task", "tasks://arithmetic?digits=2&ops=+&n=300&split=test", "--n", "300",
                 "--k", "0", "--max-new-tokens", "6", "--out", str(report)]) == 0
    run_accuracy = json.loads((demo_run / "eval.json").read_text())["metrics"]["accuracy"]
    assert json.loads(report.read_text())["metrics"]["accuracy"] == pytest.approx(run_accuracy, abs=1e-9)


def test_untrained_model_scores_zero(demo_run, tmp_path):
    report = tmp_path / "eval.json"
    assert main(["eval", str(demo_run / "init"), "--task", "arithmetic", "--n", "100", "--k", "0",
                 "--max-new-tokens", "6", "--out", str(report)]) == 0
    assert json.loads(report.read_text())["metrics"]["accuracy"] < 0.05
