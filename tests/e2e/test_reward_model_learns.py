"""recipes/reward_ensemble.yaml (cut to 2 members x 150 steps) from the SFT warm start learns the graded gold
preference: each member's held-out pairwise accuracy on 400 clean test pairs rises from chance by a margin
measured on this machine (seed 0: 0.49 -> 0.73 at 100 steps), and the members are distinct models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from alignrl.cli import main
from alignrl.tracking import read_metrics

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "reward_ensemble.yaml"


def test_seeded_reward_ensemble_learns_held_out_preferences(tmp_path, warm_start):
    assert main(["run", str(RECIPE), f"output_dir={tmp_path}", f"policy.path={warm_start / 'export'}",
                 "algorithm.members=2", "train.steps=150", "--no-progress"]) == 0
    run = tmp_path / "reward-ensemble-arithmetic"
    summary = json.loads((run / "ensemble.json").read_text())
    assert len(summary["exports"]) == 2
    for k in range(2):
        evals = [r for r in read_metrics(run / f"member{k}" / "metrics.jsonl") if "eval/accuracy" in r]
        start, end = evals[0]["eval/accuracy"], evals[-1]["eval/accuracy"]
        assert evals[0]["step"] == 0 and evals[-1]["step"] == 150 and evals[-1]["eval/n"] == 400
        assert end >= 0.64 and end - start >= 0.12, (k, start, end)
    heads = [load_file(str(run / f"member{k}" / "export" / "model.safetensors"))["score.weight"] for k in range(2)]
    assert not heads[0].equal(heads[1])
    assert summary["mean"]["accuracy"] == pytest.approx(
        sum(summary["members"][f"member{k}"]["accuracy"] for k in range(2)) / 2)
