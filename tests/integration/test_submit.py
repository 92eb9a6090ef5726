"""``alignrl submit`` against a real Ray head started with ``ray start --head`` on 127.0.0.1."""

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from alignrl.actors.cluster import free_port
from alignrl.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "tiny" / "demo_sft_arithmetic.yaml"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def ray_head():
    temp = tempfile.mkdtemp(prefix="alignrl-head-", dir="/tmp")
    port, dashboard, agent = free_port(), free_port(), free_port()
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "RAY_AUTH_MODE": "disabled",
           "PYTHONPATH": f"{ROOT}:{os.environ.get('PYTHONPATH', '')}"}
    start = [str(BIN / "ray"), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
             f"--dashboard-port={dashboard}", "--dashboard-host=127.0.0.1", "--include-dashboard=true",
             f"--dashboard-agent-listen-port={agent}",  # the default 52365 may be held by another local Ray
             "--num-cpus=2", f"--temp-dir={temp}", "--disable-usage-stats"]
    subprocess.run(start, env=env, check=True, capture_output=True, timeout=180)
    address = f"http://127.0.0.1:{dashboard}"
    deadline = time.time() + 120
    while time.time() < deadline:  # the Jobs API comes up a little after `ray start` returns
        try:
            urllib.request.urlopen(f"{address}/api/version", timeout=5)
            break
        except OSError:
            time.sleep(1)
    try:
        yield address, env
    finally:
        _stop_head(temp)


def _stop_head(temp: str) -> None:
    """Stop this head only: `ray stop` would kill every Ray on the machine (other runs' too)."""
    import psutil

    procs = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(temp in part for part in (proc.info["cmdline"] or [])):
            procs.append(proc)
            proc.kill()
    psutil.wait_procs(procs, timeout=30)


def _submit(args, env, monkeypatch, capsys):
    for key in ("PATH", "PYTHONPATH"):
        monkeypatch.setenv(key, env[key])
    code = main(["submit", *args])
    return code, capsys.readouterr()


def test_submit_runs_the_recipe_on_the_cluster_and_streams_its_logs(ray_head, tmp_path, monkeypatch, capsys):
    address, env = ray_head
    overrides = [f"output_dir={tmp_path}", "name=submitted", "train.steps=3", "train.eval_every=0",
                 "eval.n=5", "eval.k=0", "learner.cpus_per_worker=1", "learner.micro_batch_size=32",
                 "train.batch_size=32"]
    code, out = _submit([str(RECIPE), *overrides, "--address", address], env, monkeypatch, capsys)
    assert code == 0, out.out + out.err
    assert "submitted job" in out.out and "succeeded" in out.out
    assert "run submitted finished" in out.out  # the job's own output, streamed back
    assert (tmp_path / "submitted" / "export" / "model.safetensors").is_file()
    assert (tmp_path / "submitted" / "metrics.jsonl").is_file()


def test_submit_returns_the_jobs_exit_status_when_it_fails_on_the_cluster(ray_head, tmp_path, monkeypatch, capsys):
    address, env = ray_head
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("a run folder that is already there")
    overrides = [f"output_dir={tmp_path}", "name=taken", "train.steps=1"]
    code, out = _submit([str(RECIPE), *overrides, "--address", address], env, monkeypatch, capsys)
    assert code == 2
    assert "already exists" in out.out and "failed" in out.out
    assert (tmp_path / "taken" / "keep.txt").read_text() == "a run folder that is already there"


def test_a_bad_recipe_fails_before_anything_is_submitted(tmp_path, capsys):
    code = main(["submit", str(RECIPE), "train.steps=0", "--address", "http://127.0.0.1:1"])
    assert code == 2
    assert "train.steps" in capsys.readouterr().err


def test_an_unreachable_cluster_is_a_clear_error(capsys):
    port = free_port()
    code = main(["submit", str(RECIPE), "--address", f"http://127.0.0.1:{port}"])
    assert code == 2
    err = capsys.readouterr().err
    assert "cannot reach the Ray Jobs API" in err and "Traceback" not in err
