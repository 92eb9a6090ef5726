"""Data sources: tasks:// URIs and local jsonl/json/parquet files in TRL's dataset formats."""

from __future__ import annotations

import json
import os
from pathlib import Path

import datasets  # noqa: F401  (slow first import: paid at collection, not inside a test)
import pytest

from alignrl.data import (
    Example,
    PreferenceExample,
    load_examples,
    load_preference_examples,
    task_of,
)
from alignrl.errors import UserError
from alignrl.tasks import examples_from_uri


def _write(path: Path, rows: list[dict]) -> Path:
    """Write rows as .jsonl, .json (a list) or .parquet, by the path's extension."""
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows))
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _msg(role: str, content: str) -> dict:
    return {"role": role, "content": content}


def test_task_uri_source():
    uri = "tasks://arithmetic?digits=1&n=7"
    assert load_examples(uri) == examples_from_uri(uri)
    assert task_of(uri) == "arithmetic"
    assert task_of("data/train.jsonl") is None


def test_task_of_checks_the_uri():
    with pytest.raises(UserError, match="Did you mean 'sort'"):
        task_of("tasks://sorted?n=2")


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet"])
def test_standard_prompt_completion(tmp_path, suffix):
    rows = [{"prompt": "1+1=", "completion": "2"}, {"prompt": "2+3=", "completion": "5"}]
    path = _write(tmp_path / f"train{suffix}", rows)
    assert load_examples(str(path)) == [Example("1+1=", "2", "2"), Example("2+3=", "5", "5")]


def test_nothing_is_written_next_to_the_data(tmp_path):
    path = _write(tmp_path / "train.jsonl", [{"prompt": "a", "completion": "b"}])
    load_examples(str(path))
    assert os.listdir(tmp_path) == ["train.jsonl"]


def test_answer_column_and_prompt_answer_format(tmp_path):
    rows = [{"prompt": "q1", "completion": "work... 4", "answer": 4}, {"prompt": "q2", "completion": "x", "answer": 5}]
    assert load_examples(str(_write(tmp_path / "a.jsonl", rows)))[0] == Example("q1", "work... 4", "4")
    rows = [{"prompt": "3+4=", "answer": "7"}]
    assert load_examples(str(_write(tmp_path / "b.jsonl", rows))) == [Example("3+4=", "7", "7")]


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_conversational_prompt_completion(tmp_path, suffix):
    prompt = [_msg("system", "be brief"), _msg("user", "2+2?")]
    rows = [{"prompt": prompt, "completion": [_msg("assistant", "4")]}]
    (ex,) = load_examples(str(_write(tmp_path / f"c{suffix}", rows)))
    assert (ex.prompt, ex.completion, ex.answer) == ("2+2?", "4", "4")
    assert ex.prompt_messages == tuple(prompt)


def test_messages_format_last_assistant_is_completion(tmp_path):
    messages = [_msg("user", "hi"), _msg("assistant", "hello"), _msg("user", "2+2?"), _msg("assistant", "4")]
    (ex,) = load_examples(str(_write(tmp_path / "m.jsonl", [{"messages": messages}])))
    assert (ex.prompt, ex.completion) == ("2+2?", "4")
    assert ex.prompt_messages == tuple(messages[:3])


def test_messages_without_assistant_is_an_error(tmp_path):
    path = _write(tmp_path / "m.jsonl", [{"messages": [_msg("user", "hi")]}])
    with pytest.raises(UserError, match="row 0.*no assistant"):
        load_examples(str(path))


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_preference_standard(tmp_path, suffix):
    rows = [{"prompt": "1+1=", "chosen": "2", "rejected": "3"}]
    path = _write(tmp_path / f"p{suffix}", rows)
    assert load_preference_examples(str(path)) == [PreferenceExample("1+1=", "2", "3")]


def test_preference_conversational_explicit_and_implicit_prompt(tmp_path):
    user = [_msg("user", "2+2?")]
    good, bad = [_msg("assistant", "4")], [_msg("assistant", "5")]
    explicit = _write(tmp_path / "e.jsonl", [{"prompt": user, "chosen": good, "rejected": bad}])
    implicit = _write(tmp_path / "i.jsonl", [{"chosen": user + good, "rejected": user + bad}])
    want = PreferenceExample("2+2?", "4", "5", tuple(user), tuple(good), tuple(bad))
    assert load_preference_examples(str(explicit)) == [want]
    assert load_preference_examples(str(implicit)) == [want]


def test_missing_file_names_key_and_path(tmp_path):
    path = tmp_path / "nope.jsonl"
    with pytest.raises(UserError) as err:
        load_examples(str(path), key="data.eval")
    assert "data.eval" in str(err.value) and str(path) in str(err.value)


def test_missing_columns_names_found_and_expected(tmp_path):
    path = _write(tmp_path / "t.jsonl", [{"text": "hello", "label": 1}])
    with pytest.raises(UserError) as err:
        load_examples(str(path), key="data.train")
    msg = str(err.value)
    assert "data.train" in msg and str(path) in msg
    assert "['label', 'text']" in msg and "prompt+completion" in msg
    with pytest.raises(UserError, match=r"\['label', 'text'\].*prompt\+chosen\+rejected"):
        load_preference_examples(str(path))


def test_preference_file_is_not_an_example_file(tmp_path):
    path = _write(tmp_path / "p.jsonl", [{"prompt": "a", "chosen": "b", "rejected": "c"}])
    with pytest.raises(UserError, match="this is a preference file"):
        load_examples(str(path))


@pytest.mark.parametrize(
    "name, content, word",
    [("x.csv", "a,b\n", "unsupported extension"), ("bad.jsonl", "{not json\n", "cannot read"),
     ("empty.jsonl", "", "is empty")],
)
def test_unsupported_or_malformed_file(tmp_path, name, content, word):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(UserError, match=word):
        load_examples(str(path))


def test_other_schemes_and_tasks_for_preferences():
    with pytest.raises(UserError, match="unsupported source"):
        load_examples("hf://org/data")
    with pytest.raises(UserError, match="not preference pairs"):
        load_preference_examples("tasks://arithmetic")


def test_non_string_prompt_is_an_error(tmp_path):
    path = _write(tmp_path / "n.jsonl", [{"prompt": 3, "completion": "x"}])
    with pytest.raises(UserError, match="row 0: 'prompt' must be a string"):
        load_examples(str(path))


@pytest.mark.parametrize("name, content, words", [
    ("latin1.jsonl", '{"prompt": "caf\xe9", "completion": "x"}\n'.encode("latin-1"), ["cannot read", "latin1.jsonl"]),
    ("blank.jsonl", b"\n\n", ["blank.jsonl"]),
    ("types.jsonl", b'{"prompt": 3, "completion": "x"}\n', ["row 0: 'prompt' must be a string"]),
    ("mixed.jsonl", b'{"prompt": "a", "completion": "x"}\n{"prompt": ["a"], "completion": "y"}\n', ["mixed.jsonl"]),
])
def test_undecodable_blank_or_mistyped_files_name_the_file(tmp_path, name, content, words):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UserError) as err:
        load_examples(str(path))
    assert str(err.value).startswith("data.train: ") and all(w in str(err.value) for w in words), str(err.value)
