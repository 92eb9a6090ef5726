"""prefs:// synthetic preference pairs: deterministic, ordered by the gold reward, label noise at its rate."""

import pytest

from alignrl.data.sources import load_preference_examples
from alignrl.errors import UserError
from alignrl.tasks.arithmetic import digit_credit, verify

URI = "prefs://arithmetic?digits=2&n=1000&split=train&gold=digits"


def _answer(prompt: str) -> str:
    a, b = prompt.rstrip("=").split("+")
    return str(int(a) + int(b))


def test_clean_pairs_are_ordered_by_the_gold_reward_and_deterministic():
    pairs = load_preference_examples(URI)
    assert len(pairs) == 1000 and pairs == load_preference_examples(URI)
    for p in pairs:
        gold = _answer(p.prompt)
        assert digit_credit(p.chosen, gold) > digit_credit(p.rejected, gold), p
    # the candidates are not trivially "gold vs anything": many chosen answers are wrong but closer
    assert 0.2 < sum(verify(p.chosen, _answer(p.prompt)) == 0.0 for p in pairs) / len(pairs) < 0.8


def test_noise_flips_that_share_of_labels_and_the_same_prompts():
    clean, noisy = load_preference_examples(URI), load_preference_examples(URI + "&noise=0.25")
    assert [p.prompt for p in noisy] == [p.prompt for p in clean]
    flipped = sum(digit_credit(p.chosen, _answer(p.prompt)) < digit_credit(p.rejected, _answer(p.prompt))
                  for p in noisy) / len(noisy)
    assert abs(flipped - 0.25) < 0.04  # 1000 Bernoulli(0.25) draws: sd 0.014


def test_exact_gold_prefers_the_right_answer_only():
    pairs = load_preference_examples("prefs://arithmetic?digits=2&n=300&gold=exact")
    assert all(verify(p.chosen, _answer(p.prompt)) == 1.0 and verify(p.rejected, _answer(p.prompt)) == 0.0
               for p in pairs)


@pytest.mark.parametrize("uri, words", [
    ("prefs://sort?n=10", ["no synthetic preferences for task 'sort'", "arithmetic"]),
    ("prefs://arithmetic?noise=x", ["noise='x'"]),
    ("prefs://arithmetic?noise=0.5", ["noise must be in [0, 0.5)"]),
    ("prefs://arithmetic?gold=fuzzy", ["reward must be one of"]),
    ("prefs://arithmetic?digitz=2", ["unknown key 'digitz'"]),
])
def test_bad_uris_name_the_problem(uri, words):
    with pytest.raises(UserError) as err:
        load_preference_examples(uri, key="data.eval")
    assert str(err.value).startswith("data.eval: ")
    for w in words:
        assert w in str(err.value)
