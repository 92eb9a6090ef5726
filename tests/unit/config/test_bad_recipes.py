"""The malformed-recipe corpus (tests/recipes_bad/*.yaml) and bad overrides through the real CLI.

Each corpus file starts with ``# expect: A | B | ...``: substrings the one-line error must contain
(the dotted key, a word of the explanation or suggestion, and ``file:LINE`` where a line is known).
``validate`` and ``run`` must both exit 2 with ``alignrl: error: ...`` on stderr, no traceback,
and ``run`` must not create anything under ``output_dir``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import alignrl.config  # noqa: F401  (imports torch once at collection, so each test stays fast)
from alignrl.cli import main
from alignrl.config import load_recipe
from alignrl.errors import UserError

REPO = Path(__file__).resolve().parents[3]
CORPUS = REPO / "tests" / "recipes_bad"
BAD = sorted(CORPUS.glob("*.yaml"))  # top level only: cycle/ holds the two halves of an extends cycle
DEMO = REPO / "recipes" / "tiny" / "demo_sft_arithmetic.yaml"
HEADER = "# expect:"


def expected(path: Path) -> list[str]:
    first = path.read_text().splitlines()[0]
    assert first.startswith(HEADER), f"{path.name}: first line must be '{HEADER} A | B | ...'"
    parts = [p.strip() for p in first[len(HEADER):].split(" | ")]
    assert all(parts), f"{path.name}: empty substring in the expect header"
    return parts


def check_error(err: str, wanted: list[str]) -> None:
    assert err.startswith("alignrl: error:"), err
    assert "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, f"expected a one-line message, got:\n{err}"
    for sub in wanted:
        assert sub in err, f"{sub!r} not in the error:\n{err}"


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from an empty folder, so relative paths (runs/, data files) never touch the repo."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_corpus_is_large_and_every_file_has_an_expect_header():
    assert len(BAD) >= 18
    for path in BAD:
        assert len(expected(path)) >= 1


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_validate_rejects(path: Path, in_tmp: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["validate", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    check_error(err, expected(path))


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_run_rejects_before_writing_anything(path: Path, in_tmp: Path, capsys: pytest.CaptureFixture[str]):
    runs = in_tmp / "runs"
    assert main(["run", str(path), f"output_dir={runs}", "--no-progress"]) == 2
    check_error(capsys.readouterr().err, expected(path))
    assert not runs.exists() or not any(runs.iterdir())
    assert list(in_tmp.iterdir()) == []  # nothing at all next to the (relative) defaults either


@pytest.mark.parametrize("name", ["a.yaml", "b.yaml"])
def test_cycle_halves_are_rejected_on_their_own(name: str, in_tmp: Path):
    with pytest.raises(UserError, match=r"cycle/[ab]\.yaml:2: extends: cycle in recipes"):
        load_recipe(CORPUS / "cycle" / name)


def test_missing_recipe_file(in_tmp: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["validate", str(in_tmp / "nope.yaml")]) == 2
    check_error(capsys.readouterr().err, ["nope.yaml", "does not exist"])


BAD_OVERRIDES = [
    ("train.stesp=10", ["override 'train.stesp=10'", "train.stesp", "unknown key", "Did you mean 'steps'"]),
    ("learner.lr=abc", ["override 'learner.lr=abc'", "learner.lr", "expected a number", "'abc'"]),
    ("nodots", ["override 'nodots'", "expected dotted.key=value"]),
    ("train.steps.x=1", ["train.steps is a value, not a section", "'x'"]),
    ("=5", ["override '=5'", "not a dotted key"]),
    ("train..steps=5", ["not a dotted key"]),
    ("train.steps=[1", ["override 'train.steps=[1'", "not valid YAML"]),
    ("lerner.lr=0.1", ["lerner", "unknown key", "Did you mean 'learner'"]),
    ("learner.zero_stage=4", ["learner.zero_stage", "expected one of 0, 1, 2, 3"]),
    ("data.train=tasks://nope", ["data.train", "unknown task 'nope'"]),
    ("policy.path=/nonexistent/m", ["policy", "exactly one of 'path'"]),  # the demo already has tiny:
    ("train.batch_size=100", ["train.batch_size", "not a multiple", "= 128"]),
]


@pytest.mark.parametrize(("override", "wanted"), BAD_OVERRIDES, ids=[o for o, _ in BAD_OVERRIDES])
def test_bad_override(override: str, wanted: list[str], in_tmp: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["validate", str(DEMO), override]) == 2
    check_error(capsys.readouterr().err, wanted)
    runs = in_tmp / "runs"
    assert main(["run", str(DEMO), f"output_dir={runs}", override, "--no-progress"]) == 2
    check_error(capsys.readouterr().err, wanted)
    assert not runs.exists() or not any(runs.iterdir())
