"""String tasks (reverse, sort): determinism, disjoint splits, gold answers verify, exact-match verifier."""

from __future__ import annotations

import pytest

from alignrl.errors import UserError
from alignrl.tasks import TASKS
from alignrl.tasks.base import verify_exact
from alignrl.tasks.reverse import ReverseParams, reverse
from alignrl.tasks.sort import SortParams, sort


def test_registered():
    assert TASKS.entry("reverse").params is ReverseParams
    assert TASKS.entry("sort").params is SortParams


def test_reverse_format():
    for ex in reverse(ReverseParams(n=100)):
        text = ex.prompt.removeprefix("reverse ").removesuffix(":")
        assert ex.prompt == f"reverse {text}:"
        assert 3 <= len(text) <= 6 and text.isalpha()
        assert ex.completion == ex.answer == text[::-1]


def test_sort_format():
    for ex in sort(SortParams(n=100)):
        text = ex.prompt.removeprefix("sort ").removesuffix(":")
        assert ex.prompt == f"sort {text}:" and text.isdigit()
        assert ex.completion == ex.answer == "".join(sorted(text))


@pytest.mark.parametrize("task, params", [(reverse, ReverseParams), (sort, SortParams)])
def test_deterministic_by_seed(task, params):
    assert task(params(n=100, seed=4)) == task(params(n=100, seed=4))
    assert task(params(n=100, seed=4)) != task(params(n=100, seed=5))


@pytest.mark.parametrize(
    "kw",
    [
        {"min_len": 1, "max_len": 3, "alphabet": "ab"},  # 14 strings: enumerated, capped
        {"min_len": 2, "max_len": 4, "alphabet": "abcdefghij"},  # 11 100 strings: enumerated
        {},  # 26**3 + ... + 26**6 strings: sampled
    ],
)
@pytest.mark.parametrize("n, seed", [(10, 0), (300, 1)])
def test_reverse_splits_disjoint(kw, n, seed):
    train = {ex.prompt for ex in reverse(ReverseParams(n=n, seed=seed, **kw))}
    test = {ex.prompt for ex in reverse(ReverseParams(n=n, seed=seed + 1, split="test", **kw))}
    assert train and test and not train & test


@pytest.mark.parametrize("max_len, n", [(3, 50), (6, 500)])
def test_sort_splits_disjoint(max_len, n):
    train = {ex.prompt for ex in sort(SortParams(max_len=max_len, n=n))}
    test = {ex.prompt for ex in sort(SortParams(max_len=max_len, n=n, split="test", seed=9))}
    assert train and test and not train & test


def test_capped_split_has_every_problem_once():
    kw = {"min_len": 1, "max_len": 3, "alphabet": "ab"}  # 2 + 4 + 8 = 14 strings
    train = [ex.prompt for ex in reverse(ReverseParams(n=1000, **kw))]
    test = [ex.prompt for ex in reverse(ReverseParams(n=1000, split="test", **kw))]
    assert len(set(train)) == len(train) and len(set(test)) == len(test)
    assert len(train) + len(test) == 14


@pytest.mark.parametrize("task, params", [(reverse, ReverseParams), (sort, SortParams)])
def test_gold_verifies_and_perturbed_does_not(task, params):
    verify = TASKS.get(task.__name__).verify
    for ex in task(params(n=200)):
        assert verify(ex.completion, ex.answer) == 1.0
        assert verify(ex.completion[:-1], ex.answer) == 0.0
        assert verify(ex.completion + ex.completion[-1], ex.answer) == 0.0


@pytest.mark.parametrize(
    "completion, answer, reward",
    [
        ("dcba", "dcba", 1.0),
        ("dcba\nreverse", "dcba", 1.0),
        ("dcba</s>", "dcba", 1.0),
        (" dcba", "dcba", 1.0),
        ("dcba.", "dcba", 1.0),
        ("dcbaa", "dcba", 0.0),
        ("dcb", "dcba", 0.0),
        ("dc ba", "dcba", 0.0),
        ("DCBA", "dcba", 0.0),
        ("", "dcba", 0.0),
        ("", "", 0.0),
        ("0123", "0123", 1.0),
        ("01234", "0123", 0.0),
    ],
)
def test_verify_exact(completion, answer, reward):
    assert verify_exact(completion, answer) == reward


@pytest.mark.parametrize(
    "kw, word",
    [({"min_len": 0}, "min_len"), ({"min_len": 5, "max_len": 4}, "max_len"), ({"alphabet": "aa"}, "alphabet"),
     ({"alphabet": "a b"}, "alphabet"), ({"alphabet": ""}, "alphabet")],
)
def test_bad_reverse_params(kw, word):
    with pytest.raises(UserError, match=word):
        ReverseParams(**kw)
