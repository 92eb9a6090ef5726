"""Task URIs: parsing, strict errors naming the offending key, and reward_for."""

from __future__ import annotations

import pytest

from alignrl.errors import UserError
from alignrl.tasks import TASKS, examples_from_uri, parse_task_uri, reward_for
from alignrl.tasks.arithmetic import ArithmeticParams
from alignrl.tasks.reverse import ReverseParams


def test_parse_full_uri():
    name, p = parse_task_uri("tasks://arithmetic?digits=3&ops=+-&n=20000&split=test&seed=7&test_fraction=0.25")
    assert name == "arithmetic"
    assert p == ArithmeticParams(digits=3, ops="+-", n=20000, split="test", seed=7, test_fraction=0.25)


def test_no_query_gives_defaults():
    assert parse_task_uri("tasks://reverse") == ("reverse", ReverseParams())
    assert parse_task_uri("tasks://reverse?") == ("reverse", ReverseParams())


def test_plus_stays_a_plus_and_percent_decoding_works():
    # Form decoding would turn "+" into a space; a task URI keeps it.
    assert parse_task_uri("tasks://arithmetic?ops=+")[1].ops == "+"
    assert parse_task_uri("tasks://arithmetic?ops=%2B%2A")[1].ops == "+*"


def test_unknown_task_lists_known_and_suggests():
    uri = "tasks://arithmetc?n=5"
    with pytest.raises(UserError) as err:
        parse_task_uri(uri)
    msg = str(err.value)
    assert uri in msg and "'arithmetc'" in msg and "Did you mean 'arithmetic'" in msg
    for name in TASKS.names():
        assert name in msg


def test_unknown_key_names_it_and_suggests():
    uri = "tasks://arithmetic?digit=2"
    with pytest.raises(UserError) as err:
        parse_task_uri(uri)
    msg = str(err.value)
    assert uri in msg and "'digit'" in msg and "Did you mean 'digits'" in msg
    assert "digits, ops, reward, n, split, seed, test_fraction" in msg


@pytest.mark.parametrize(
    "query, key, typ",
    [("digits=two", "digits", "int"), ("n=1.5", "n", "int"), ("seed=", "seed", "int"),
     ("test_fraction=abc", "test_fraction", "float")],
)
def test_bad_value_type_names_key_and_expected_type(query, key, typ):
    uri = f"tasks://arithmetic?{query}"
    with pytest.raises(UserError) as err:
        parse_task_uri(uri)
    msg = str(err.value)
    assert uri in msg and key in msg and f"expected {typ}" in msg


@pytest.mark.parametrize(
    "uri, word",
    [
        ("arithmetic?digits=2", "tasks://"),
        ("task://arithmetic", "tasks://"),
        ("tasks://arithmetic?digits=2&digits=3", "given twice"),
        ("tasks://arithmetic?digits", "not key=value"),
        ("tasks://arithmetic?ops=/", "ops"),
        ("tasks://arithmetic?split=val", "split"),
        ("tasks://", "unknown task"),
    ],
)
def test_other_uri_errors(uri, word):
    with pytest.raises(UserError, match=word) as err:
        parse_task_uri(uri)
    assert uri in str(err.value)


def test_examples_from_uri():
    examples = examples_from_uri("tasks://arithmetic?digits=1&n=5&seed=2")
    assert examples == TASKS.get("arithmetic")(ArithmeticParams(digits=1, n=5, seed=2))


def test_reward_for_by_name_and_by_uri():
    assert reward_for("arithmetic", ["46", "47\n", ""], ["46", "47", "1"]) == [1.0, 1.0, 0.0]
    assert reward_for("tasks://reverse?n=3", ["dcba", "abcd"], ["dcba", "dcba"]) == [1.0, 0.0]


def test_reward_for_errors():
    with pytest.raises(UserError, match="Did you mean 'reverse'"):
        reward_for("revers", ["a"], ["a"])
    with pytest.raises(ValueError, match="2 completions but 1 answers"):
        reward_for("sort", ["1", "2"], ["1"])
