"""WARP as one job on the real stack (tiny model, a few GRPO steps per run; a random tiny model earns no
reward, so an entropy bonus is what moves each run, differently per seed): M = 2 EMA-anchored runs side by side
as Ray tasks, SLERP of
their task vectors, the LITI sweep with reward and KL to the SFT start, the next iteration from the chosen η,
and everything in the run folder."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from alignrl.cli import main
from alignrl.loops.warp import slerp_task_vectors

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _write_recipe(tmp_path, tiny_model_dir):
    recipe = tmp_path / "warp.yaml"
    recipe.write_text(f"""\
name: warp
seed: 3
policy: {{path: {tiny_model_dir}}}
algorithm: {{name: grpo, group_size: 4, entropy_coef: 0.05}}
anchors: [{{model: ema, decay: 0.9, estimator: k3, coef: 0.05}}]
data: {{train: "tasks://arithmetic?digits=1&n=200&split=train", eval: "tasks://arithmetic?digits=1&n=6&split=test"}}
rollout: {{engine: hf, max_new_tokens: 3, cpus_per_worker: 0.5}}
learner: {{micro_batch_size: 16, lr: 1.0e-2, cpus_per_worker: 0.5}}
train: {{steps: 3, batch_size: 16, max_length: 16, log_every: 1, eval_every: 0, checkpoint_every: 0}}
eval: {{n: 6, k: 0, max_new_tokens: 3}}
warp: {{runs: 2, iterations: 2, etas: [0.0, 0.5, 1.0], eta: 0.5, eval_samples: 2}}
ray: {{num_cpus: 2}}
""")
    return recipe


def test_warp_runs_merges_sweeps_and_chains_iterations(tmp_path, tiny_model_dir):
    recipe = _write_recipe(tmp_path, tiny_model_dir)
    assert main(["run", str(recipe), f"output_dir={tmp_path}", "--no-progress"]) == 0
    run = tmp_path / "warp"
    front = json.loads((run / "warp_front.json").read_text())
    points = front["points"]
    # a run asks for 1 CPU of 2: both runs of an iteration train at the same time, each as its own Ray task
    assert front["parallel_runs"] == 2
    for i in (0, 1):
        a, b = (next(p for p in points if p["iteration"] == i and p["run"] == m) for m in (0, 1))
        assert a["started"] < b["finished"] and b["started"] < a["finished"], (a, b)
    expected = []
    for i in (0, 1):
        expected += [(i, "rl_run", 0, None), (i, "rl_run", 1, None)] + [(i, "liti", None, e) for e in (0.0, 0.5, 1.0)]
    assert [(p["iteration"], p["kind"], p["run"], p["eta"]) for p in points] == expected
    first_start = next(p for p in points if p["iteration"] == 0 and p["eta"] == 0.0)
    assert first_start["kl_to_sft"] == pytest.approx(0.0, abs=1e-5)  # η = 0 of iteration 0 is the SFT model itself
    for name in ("warp_front.png", "export/model.safetensors", "iter0-run1/export/model.safetensors",
                 "iter1-run0/recipe.yaml", "iter0/eta_0.5/config.json"):
        assert (run / name).is_file(), name
    # iteration 1 starts where iteration 0 chose (η = 0.5), and the export is iteration 1's η = 0.5
    assert f"{run}/iter0/eta_0.5" in (run / "iter1-run0" / "recipe.yaml").read_text()
    final, chosen = load_file(str(run / "export" / "model.safetensors")), load_file(
        str(run / "iter1" / "eta_0.5" / "model.safetensors"))
    assert all(torch.equal(final[k], chosen[k]) for k in final)
    # the η = 1 point of each iteration is the SLERP of that iteration's two runs
    init = load_file(str(tiny_model_dir / "model.safetensors"))
    runs = [load_file(str(run / f"iter0-run{m}" / "export" / "model.safetensors")) for m in (0, 1)]
    slerped = slerp_task_vectors(runs, init)
    at_one = load_file(str(run / "iter0" / "eta_1" / "model.safetensors"))
    assert all(torch.allclose(at_one[k], slerped[k], atol=1e-6) for k in at_one)
    assert any(not torch.allclose(runs[0][k], runs[1][k]) for k in init)  # two seeds, two different runs
    # --resume of the job as a kill in iteration 1 would leave it (its run 0 finished, run 1 not begun, no merge):
    # iteration 0 and run 0 are kept, run 1 and the merges are redone, and the front and export equal the job's
    cut = tmp_path / "cut"
    shutil.copytree(run, cut)
    for gone in ("export", "iter1", "iter1-run1"):
        shutil.rmtree(cut / gone)
    (cut / "warp_front.json").write_text(json.dumps({**front, "points": [p for p in points if p["iteration"] == 0]}))
    kept = (cut / "iter1-run0" / "export" / "model.safetensors").stat().st_mtime_ns
    assert main(["run", "--resume", str(cut), "--no-progress"]) == 0
    untimed = lambda ps: [{k: v for k, v in p.items() if k not in ("started", "finished")} for p in ps]  # noqa: E731
    assert untimed(json.loads((cut / "warp_front.json").read_text())["points"]) == untimed(points)
    assert (cut / "iter1-run0" / "export" / "model.safetensors").stat().st_mtime_ns == kept  # not trained again
    again = load_file(str(cut / "export" / "model.safetensors"))
    assert all(torch.equal(again[k], final[k]) for k in final)


def test_slerp_of_more_than_two_runs_weighs_them_alike_when_they_are_parallel():
    init = {"w": torch.zeros(4, dtype=torch.float64)}
    runs = [{"w": torch.tensor([1.0, 2.0, 0.0, 1.0], dtype=torch.float64) * s} for s in (1.0, 2.0, 3.0)]
    merged = slerp_task_vectors(runs, init)  # parallel task vectors: SLERP falls back to LERP, the mean
    assert torch.allclose(merged["w"], runs[1]["w"])


def test_a_failed_parallel_run_stops_the_job_naming_the_run(tmp_path, tiny_model_dir):
    import dataclasses

    from alignrl.actors.cluster import ray_session
    from alignrl.config import ModelConfig, load_recipe
    from alignrl.errors import UserError
    from alignrl.loops.warp import train_runs

    cfg = load_recipe(_write_recipe(tmp_path, tiny_model_dir), [f"output_dir={tmp_path}"])
    good = dataclasses.replace(cfg, name="run-good", warp=None, train=dataclasses.replace(cfg.train, steps=1))
    bad = dataclasses.replace(good, name="run-bad", policy=ModelConfig(path=str(tmp_path / "no-such-model")))
    with ray_session(num_cpus=2), pytest.raises(UserError) as err:
        train_runs([good, bad], at_once=2, show_progress=False)
    assert "WARP run run-bad" in str(err.value) and "no-such-model" in str(err.value)
