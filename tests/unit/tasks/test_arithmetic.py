"""Arithmetic task: determinism, disjoint splits, gold answers verify, verifier parsing edge cases."""

from __future__ import annotations

import re

import pytest

from alignrl.errors import UserError
from alignrl.tasks import TASKS
from alignrl.tasks.arithmetic import ArithmeticParams, arithmetic, digit_credit, verify
from alignrl.tasks.base import reward_for


def _problems(**kw) -> list[str]:
    return [ex.prompt for ex in arithmetic(ArithmeticParams(**kw))]


def test_registered_with_params():
    entry = TASKS.entry("arithmetic")
    assert entry.params is ArithmeticParams
    assert entry.fn.verify is verify


def test_same_seed_same_examples():
    assert arithmetic(ArithmeticParams(n=200, seed=3)) == arithmetic(ArithmeticParams(n=200, seed=3))


def test_different_seeds_differ():
    assert _problems(n=200, seed=0) != _problems(n=200, seed=1)


@pytest.mark.parametrize("digits, ops", [(1, "+"), (2, "+-"), (2, "*"), (3, "+")])  # (3, "+") is sampled
@pytest.mark.parametrize("n, seed", [(50, 0), (500, 1), (5000, 2)])
def test_train_and_test_never_share_a_problem(digits, ops, n, seed):
    train = set(_problems(digits=digits, ops=ops, n=n, seed=seed, split="train"))
    test = set(_problems(digits=digits, ops=ops, n=n, seed=seed + 7, split="test"))
    assert train and test
    assert not train & test


def test_split_does_not_depend_on_seed_or_n():
    # Every problem ever drawn for test, over seeds and sizes, is absent from a full train split.
    full_train = set(_problems(digits=1, ops="+-", n=10_000))
    for seed in range(5):
        for n in (5, 20):
            assert not set(_problems(digits=1, ops="+-", n=n, seed=seed, split="test")) & full_train


def test_n_is_capped_at_the_split_size_without_repeats():
    # 1-digit "+" has 10 * 10 = 100 problems; about 10% go to test.
    train = _problems(digits=1, n=10_000)
    test = _problems(digits=1, n=10_000, split="test")
    assert len(train) == len(set(train)) and len(test) == len(set(test))
    assert len(train) + len(test) == 100


def test_examples_are_distinct_and_sized():
    examples = _problems(digits=2, ops="+-*", n=3000, seed=5)
    assert len(examples) == 3000 == len(set(examples))


def test_ops_order_does_not_matter():
    assert _problems(ops="+-", n=100) == _problems(ops="-+", n=100)


def test_prompt_and_gold_format():
    for ex in arithmetic(ArithmeticParams(ops="+-*", n=300)):
        a, op, b = re.fullmatch(r"([0-9]{1,2})([-+*])([0-9]{1,2})=", ex.prompt).groups()
        want = {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op]
        assert ex.completion == ex.answer == str(want)
        assert ex.prompt_messages is None


@pytest.mark.parametrize("digits", [1, 2, 3])
def test_gold_verifies_and_perturbed_does_not(digits):
    for ex in arithmetic(ArithmeticParams(digits=digits, ops="+-*", n=200)):
        assert verify(ex.completion, ex.answer) == 1.0
        assert verify(str(int(ex.completion) + 1), ex.answer) == 0.0
        assert verify(ex.completion + "1", ex.answer) == 0.0  # "0" + "0" would be 0 again


@pytest.mark.parametrize(
    "completion, answer, reward",
    [
        ("46", "46", 1.0),
        ("46\n12+", "46", 1.0),  # stops at the newline
        ("46</s>", "46", 1.0),  # stops at eos text
        ("  46", "46", 1.0),  # leading whitespace stripped
        ("\n46=", "46", 1.0),
        ("-12", "-12", 1.0),
        ("+46", "46", 1.0),
        ("046", "46", 1.0),  # compared as integers
        ("4 6", "46", 0.0),  # stops at the space: 4
        ("46.5", "46", 0.0),  # a decimal is not the integer 46
        ("46.", "46", 1.0),  # a bare full stop ends the number
        ("460", "46", 0.0),
        ("12", "-12", 0.0),
        ("- 12", "-12", 0.0),
        ("", "46", 0.0),
        ("   ", "46", 0.0),
        ("x46", "46", 0.0),
        ("=46", "46", 0.0),
        ("٤٦", "46", 0.0),  # non-ASCII digits are not digits here
    ],
)
def test_verifier_parsing(completion, answer, reward):
    assert verify(completion, answer) == reward


@pytest.mark.parametrize(
    "kw, word",
    [({"digits": 0}, "digits"), ({"ops": "/"}, "ops"), ({"ops": ""}, "ops"), ({"n": 0}, "n must"),
     ({"split": "val"}, "split"), ({"test_fraction": 1.0}, "test_fraction"), ({"reward": "dense"}, "reward")],
)
def test_bad_params_raise_user_error(kw, word):
    with pytest.raises(UserError, match=word):
        ArithmeticParams(**kw)


def test_n_too_large_for_a_sampled_space_is_a_user_error():
    with pytest.raises(UserError, match="lower n"):
        arithmetic(ArithmeticParams(digits=9, n=10, test_fraction=1e-17, split="test"))


@pytest.mark.parametrize(
    "completion, answer, credit",
    [("46", "46", 1.0), ("45", "46", 0.5), ("146", "46", 2 / 3), ("7", "46", 0.0), ("6", "46", 0.5),
     ("-46", "46", 0.0), ("-13", "-12", 0.5), ("x46", "46", 0.0), ("46.5", "46", 0.0), ("1000", "1000", 1.0),
     ("100", "1000", 0.5)],
)
def test_digit_credit_hand_worked(completion, answer, credit):
    assert digit_credit(completion, answer) == pytest.approx(credit)


def test_digit_credit_is_one_exactly_when_the_verifier_passes():
    examples = arithmetic(ArithmeticParams(digits=2, n=50, seed=3))
    for ex in examples:
        for text in (ex.completion, str(int(ex.answer) + 1), str(int(ex.answer) + 10), ex.completion + "0"):
            assert (digit_credit(text, ex.answer) == 1.0) == (verify(text, ex.answer) == 1.0)
            assert 0.0 <= digit_credit(text, ex.answer) <= 1.0


def test_reward_for_uses_the_uri_reward_and_a_bare_name_stays_exact():
    completions, answers = ["45", "46", "x"], ["46", "46", "46"]
    assert reward_for("tasks://arithmetic?digits=2&reward=digits", completions, answers) == [0.5, 1.0, 0.0]
    assert reward_for("tasks://arithmetic?digits=2", completions, answers) == [0.0, 1.0, 0.0]
    assert reward_for("arithmetic", completions, answers) == [0.0, 1.0, 0.0]
