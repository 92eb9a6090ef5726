"""Session-wide trained models the end-to-end tests share (each costs minutes of CPU, so it is built once):
the demo's SFT run (a 2-digit-addition model at ~0.99 accuracy, also the distillation teacher) and the
short-SFT warm start the online-RL tests begin from (~0.60)."""

from pathlib import Path

import pytest

from alignrl.cli import main

ROOT = Path(__file__).resolve().parents[2]
DEMO_RECIPE = ROOT / "recipes" / "tiny" / "demo_sft_arithmetic.yaml"
WARM_RECIPE = ROOT / "recipes" / "tiny" / "sft_warmstart_arithmetic.yaml"
DEMO_STEPS = 800  # the recipe's own schedule: a cut one (cosine over fewer steps) learns later


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """The demo recipe as shipped (DEMO_STEPS steps), evaluated at 0, 400 and 800 on 300 held-out problems."""
    out = tmp_path_factory.mktemp("demo")
    overrides = [f"output_dir={out}", f"train.steps={DEMO_STEPS}", "train.eval_every=400",
                 "train.checkpoint_every=400", "eval.n=300", "name=demo-test"]
    assert main(["run", str(DEMO_RECIPE), *overrides, "--no-progress"]) == 0
    return out / "demo-test"


@pytest.fixture(scope="session")
def warm_start(tmp_path_factory):
    """recipes/tiny/sft_warmstart_arithmetic.yaml as shipped; its run folder (policy in ``export``)."""
    out = tmp_path_factory.mktemp("warm")
    assert main(["run", str(WARM_RECIPE), f"output_dir={out}", "name=warm", "--no-progress"]) == 0
    return out / "warm"
