"""load_run_data: eval.n cuts data.eval, and says so when data.eval holds fewer examples than asked."""

from pathlib import Path

import pytest

from alignrl.config import load_recipe
from alignrl.loops.common import load_run_data


def _cfg(tmp_path: Path, eval_n: int):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""\
name: data
policy: {{tiny: {{hidden: 32, layers: 1, heads: 2}}}}
algorithm: {{name: sft}}
data: {{train: "tasks://arithmetic?digits=1&n=50&split=train", eval: "tasks://arithmetic?digits=1&n=10&split=test"}}
train: {{steps: 1, batch_size: 32}}
eval: {{n: {eval_n}}}
""")
    return load_recipe(recipe)


def test_eval_n_below_the_eval_set_cuts_it_quietly(tmp_path, capsys: pytest.CaptureFixture[str]):
    data = load_run_data(_cfg(tmp_path, 4))
    assert len(data.eval) == 4 and len(data.train) == 50
    assert capsys.readouterr().err == ""


def test_eval_n_above_the_eval_set_is_noted(tmp_path, capsys: pytest.CaptureFixture[str]):
    data = load_run_data(_cfg(tmp_path, 500))
    assert 0 < len(data.eval) <= 10  # the test split keeps what is disjoint from the train split
    err = capsys.readouterr().err
    assert "eval.n is 500" in err and f"holds {len(data.eval)} examples" in err
