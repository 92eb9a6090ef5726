"""``alignrl validate`` prints the resolved recipe; every subcommand's --help documents every option."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from alignrl.cli import build_parser, main
from alignrl.config import load_recipe, recipe_to_dict

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "recipes" / "tiny" / "demo_sft_arithmetic.yaml"
COMMANDS = [("validate",), ("run",), ("submit",), ("eval",), ("export",), ("merge",), ("compare",), ("models", "tiny"), ("models", "import-gguf")]


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")  # help lines unwrapped
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("PYTHON_COLORS", "0")
    return tmp_path


def test_validate_prints_the_resolved_recipe(in_tmp: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["validate", str(DEMO), "train.steps=7", "learner.lr=3e-4", "data.eval=null"]) == 0
    out, err = capsys.readouterr()
    printed = yaml.safe_load(out)
    assert printed["train"]["steps"] == 7
    assert printed["learner"]["lr"] == pytest.approx(3e-4)
    assert printed["data"] == {"train": "tasks://arithmetic?digits=2&ops=+&n=20000&split=train", "eval": None}
    assert printed["algorithm"] == {"name": "sft", "loss_agg": "token_mean"}
    assert printed == recipe_to_dict(load_recipe(DEMO, ["train.steps=7", "learner.lr=3e-4", "data.eval=null"]))
    assert list(printed)[:3] == ["name", "policy", "data"]  # field order, not sorted
    assert "valid" in err and "runs/demo-sft-arithmetic" in err
    assert list(in_tmp.iterdir()) == []  # validate writes nothing


def test_validate_output_is_itself_a_valid_recipe(in_tmp: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["validate", str(DEMO), "seed=5"]) == 0
    resolved = in_tmp / "resolved.yaml"
    resolved.write_text(capsys.readouterr().out)
    assert main(["validate", str(resolved)]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["seed"] == 5


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    assert "usage: alignrl" in capsys.readouterr().err


def subparser(parser: argparse.ArgumentParser, command: tuple[str, ...]) -> argparse.ArgumentParser:
    for name in command:
        [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = action.choices[name]
    return parser


def test_every_command_is_covered():
    parser = build_parser()
    [top] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(top.choices) == {"validate", "run", "submit", "eval", "export", "merge", "compare", "models"}
    [models] = [a for a in top.choices["models"]._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(models.choices) == {"tiny", "import-gguf"}


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_help_exits_0_and_mentions_every_option(command: tuple[str, ...], capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code in (0, None)
    text = capsys.readouterr().out
    assert text.startswith(f"usage: alignrl {' '.join(command)}")
    actions = [a for a in subparser(build_parser(), command)._actions if not isinstance(a, argparse._HelpAction)]
    assert actions
    for action in actions:
        if action.option_strings:
            for option in action.option_strings:
                assert option in text, f"{option} missing from `alignrl {' '.join(command)} --help`"
        else:
            assert (action.metavar or action.dest) in text
        assert action.help and action.help in text, f"help of {action.dest} missing"


def test_best_of_n_without_a_reward_is_a_clear_error(tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["eval", str(tiny_model_dir), "--task", "arithmetic", "--n", "4", "--best-of-n", "1,4"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("alignrl: error: --best-of-n needs --reward") and "Traceback" not in err
    assert main(["eval", str(tiny_model_dir), "--n", "4", "--best-of-n", "1,x", "--reward", "{kind: verifier}"]) == 2
    assert "give sample counts like 1,4,16,64" in capsys.readouterr().err
    assert main(["eval", str(tiny_model_dir), "--n", "4", "--best-of-n", "2", "--reward", "{kind: modle}"]) == 2
    assert "--reward[0].kind" in capsys.readouterr().err
