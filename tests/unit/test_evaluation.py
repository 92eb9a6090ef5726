"""pass@k and best-of-n around a scripted generation engine (the engine is a stand-in: the code under test is the
selection and bookkeeping)."""

import math

import pytest
import torch

from alignrl.evaluation import best_of_n, bon_kl, pass_at_k
from alignrl.rollout.base import Completion


class ScriptedEngine:
    """Returns fixed completions per prompt (the first n of each list), recording what it was asked."""

    def __init__(self, script: dict[str, list[str]]) -> None:
        self.script, self.calls = script, []

    def generate(self, prompts, sampling):
        self.calls.append(sampling)
        return [[Completion(text=t, token_ids=(1,)) for t in self.script[p][: sampling.n]] for p in prompts]


def test_pass_at_k_closed_forms():
    assert pass_at_k(4, 0, 1) == 0.0 and pass_at_k(4, 4, 2) == 1.0
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - math.comb(3, 2) / math.comb(5, 2))
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)


def test_bon_kl_is_log_n_minus_n_minus_one_over_n():
    assert bon_kl(1) == 0.0
    assert bon_kl(4) == pytest.approx(math.log(4) - 0.75)
    assert all(bon_kl(n) < bon_kl(n + 1) for n in range(1, 64))


def test_best_of_n_keeps_the_proxys_favourite_among_the_first_n_and_reports_its_gold():
    engine = ScriptedEngine({"a": ["x", "long", "mid", "longest"], "b": ["mid", "x", "x", "x"]})
    proxy = lambda p, c, a: torch.tensor([float(len(t)) for t in c])  # noqa: E731  (prefers long answers)
    gold = lambda p, c, a: torch.tensor([1.0 if t == "mid" else 0.0 for t in c])  # noqa: E731
    out = best_of_n(engine, ["a", "b"], ["?", "?"], proxy, gold, ns=[4, 1, 2], temperature=0.7, max_new_tokens=5, seed=3)
    assert engine.calls[0].n == 4 and engine.calls[0].temperature == 0.7 and engine.calls[0].seed == 3
    assert out["samples_per_prompt"] == 4
    by_n = {p["n"]: p for p in out["points"]}
    assert list(by_n) == [1, 2, 4]
    # n=1: "x" (gold 0) and "mid" (gold 1); n=2: "long" (4) and "mid" (3); n=4: "longest" and "mid"
    assert (by_n[1]["proxy"], by_n[1]["gold"]) == (2.0, 0.5)
    assert (by_n[2]["proxy"], by_n[2]["gold"]) == (3.5, 0.5)
    assert (by_n[4]["proxy"], by_n[4]["gold"]) == (5.0, 0.5)
    assert by_n[4]["kl"] == pytest.approx(bon_kl(4))


def test_ties_keep_the_first_sample():
    engine = ScriptedEngine({"a": ["good", "bad"]})
    out = best_of_n(engine, ["a"], ["?"], lambda p, c, a: torch.zeros(len(c)),
                    lambda p, c, a: torch.tensor([1.0 if t == "good" else 0.0 for t in c]), ns=[2])
    assert out["points"][0]["gold"] == 1.0
