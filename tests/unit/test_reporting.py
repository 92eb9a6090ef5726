"""alignrl compare: run folders summarised from their metrics.jsonl, eval.json and recipe.yaml; a PNG; a
clear error for a folder that is not a finished run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from alignrl.cli import main
from alignrl.errors import UserError
from alignrl.reporting import summarize_run


def _fake_run(root: Path, name: str, curve: list[tuple[int, float]], final: float, algorithm: str = "grpo") -> Path:
    run = root / name
    run.mkdir(parents=True)
    recipe = {"name": name, "algorithm": {"name": algorithm},
              "anchors": [{"model": "path", "name": "teacher", "divergence": {"name": "reverse_kl"}, "estimator": "k2"}]}
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    rows = [{"step": s, "time": 1.5 * s, "train/loss": 0.1} for s in range(1, curve[-1][0] + 1)]
    rows += [{"step": s, "time": 1.5 * s, "eval/accuracy": a, "eval/mean_length": 3.5} for s, a in curve]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "eval.json").write_text(json.dumps({"metrics": {"accuracy": final, "mean_length": 3.25, "n": 200}}))
    return run


def test_summary_reads_start_final_length_steps_and_anchors(tmp_path: Path):
    s = summarize_run(_fake_run(tmp_path, "kdrl", [(0, 0.4), (50, 0.6), (100, 0.7)], final=0.7))
    assert (s.name, s.algorithm, s.steps) == ("kdrl", "grpo", 100)
    assert s.start_accuracy == 0.4 and s.final_accuracy == 0.7 and s.mean_length == 3.25
    assert s.curve == ((0, 0.4), (50, 0.6), (100, 0.7)) and s.wall_s == 150.0
    assert s.anchors == "teacher:reverse_kl/k2"


def test_a_run_without_a_step_0_eval_has_no_start(tmp_path: Path):
    s = summarize_run(_fake_run(tmp_path, "sft", [(800, 0.99)], final=0.99, algorithm="sft"))
    assert s.start_accuracy is None and s.final_accuracy == 0.99


def test_compare_prints_a_row_per_run_and_writes_the_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    a = _fake_run(tmp_path, "teacher-run", [(800, 0.99)], final=0.99, algorithm="sft")
    b = _fake_run(tmp_path, "student-run", [(0, 0.36), (200, 0.70)], final=0.70)
    png = tmp_path / "out" / "summary.png"
    assert main(["compare", str(a), str(b), "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert "teacher-run" in out and "student-run" in out and "0.700" in out and "0.360" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(png.parent.glob(".*tmp*"))  # written via a temp file, renamed


def test_a_folder_that_is_not_a_finished_run_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    (tmp_path / "half").mkdir()
    with pytest.raises(UserError, match="metrics.jsonl is missing"):
        summarize_run(tmp_path / "half")
    assert main(["compare", str(tmp_path / "half")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("alignrl: error:") and "Traceback" not in err
