"""RewardSet with the terms that need no worker: the verifier (exact or graded) and user functions; weights,
normalization, metrics, running-statistics state, and the errors a user's function gets."""

import pytest
import torch

from alignrl.config import RewardConfig
from alignrl.errors import UserError
from alignrl.rewards.combine import RewardSet, load_reward_function

PROMPTS = ["12+30=", "12+30=", "1+1=", "1+1="]
COMPLETIONS = ["42", "43", "2", "11"]
ANSWERS = ["42", "42", "2", "2"]


def _fn_file(tmp_path, body: str) -> str:
    path = tmp_path / "my_rewards.py"
    path.write_text(body)
    return f"{path}:score"


def test_default_verifier_gives_the_exact_reward_and_accuracy():
    out = RewardSet((RewardConfig(),), ("verifier",), "tasks://arithmetic?digits=2", 2).score(PROMPTS, COMPLETIONS,
                                                                                              ANSWERS)
    assert out.rewards.tolist() == [1.0, 0.0, 1.0, 0.0] and out.correct.tolist() == [1.0, 0.0, 1.0, 0.0]


def test_graded_verifier_changes_the_reward_not_the_accuracy():
    out = RewardSet((RewardConfig(),), ("verifier",), "tasks://arithmetic?digits=2&reward=digits", 2).score(
        PROMPTS, COMPLETIONS, ANSWERS)
    assert out.rewards.tolist() == [1.0, 0.5, 1.0, 0.0]  # "43" vs 42: the tens right; "11" vs 2: no place right
    assert out.correct.tolist() == [1.0, 0.0, 1.0, 0.0]


def test_weighted_sum_of_a_verifier_and_a_function_with_group_normalization(tmp_path):
    spec = _fn_file(tmp_path, "def score(prompts, completions, answers):\n"
                              "    return [float(len(c)) for c in completions]\n")
    terms = (RewardConfig(weight=2.0), RewardConfig(kind="function", function=spec, weight=0.5, normalize="group"))
    out = RewardSet(terms, ("exact", "length"), "tasks://arithmetic?digits=2", 2).score(PROMPTS, COMPLETIONS, ANSWERS)
    # lengths 2, 2 | 1, 2 -> group-normalized 0, 0 | -1, 1
    expected = torch.tensor([2.0, 0.0, 2.0, 0.0]) + 0.5 * torch.tensor([0.0, 0.0, -1.0, 1.0])
    torch.testing.assert_close(out.rewards, expected, atol=1e-5, rtol=0)
    assert out.metrics == {"train/reward/exact": 0.5, "train/reward/length": pytest.approx(1.75)}


def test_running_normalization_state_round_trips():
    terms = (RewardConfig(normalize="running"),)
    first = RewardSet(terms, ("v",), "tasks://arithmetic?digits=2", 2)
    first.score(PROMPTS, COMPLETIONS, ANSWERS)
    resumed = RewardSet(terms, ("v",), "tasks://arithmetic?digits=2", 2, state=first.state_dict())
    a, b = first.score(PROMPTS, COMPLETIONS, ANSWERS), resumed.score(PROMPTS, COMPLETIONS, ANSWERS)
    assert a.rewards.tolist() == b.rewards.tolist()
    assert first.state_dict() == resumed.state_dict() and first.state_dict()["v"]["count"] == 8


@pytest.mark.parametrize("body, words", [
    ("def score(p, c, a):\n    return [1.0]\n", ["must return 4 numbers", "(1,)"]),
    ("def score(p, c, a):\n    raise KeyError('boom')\n", ["failed: KeyError", "boom"]),
])
def test_a_bad_function_is_named(tmp_path, body, words):
    terms = (RewardConfig(kind="function", function=_fn_file(tmp_path, body)),)
    with pytest.raises(UserError) as err:
        RewardSet(terms, ("mine",), "tasks://arithmetic?digits=2", 2).score(PROMPTS, COMPLETIONS, ANSWERS)
    assert "reward 'mine'" in str(err.value) and all(w in str(err.value) for w in words)


def test_nan_rewards_pass_through_without_poisoning_the_running_statistics(tmp_path):
    # the loop skips a step with NaN/inf rewards and names the samples; the statistics must survive it
    body = "def score(p, c, a):\n    return [float('nan'), 1.0, 2.0, 3.0][:len(c)]\n"
    terms = (RewardConfig(kind="function", function=_fn_file(tmp_path, body), normalize="running"),)
    rewards = RewardSet(terms, ("mine",), "tasks://arithmetic?digits=2", 2).score(PROMPTS, COMPLETIONS, ANSWERS)
    assert torch.isnan(rewards.rewards[0]) and torch.isfinite(rewards.rewards[1:]).all()
    assert rewards.rewards[1:].tolist() == pytest.approx([-1.2247, 0.0, 1.2247], abs=1e-3)  # (r − 2) / std(1, 2, 3)


def test_loading_a_function_names_the_problem(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_reward_function(f"{tmp_path}/none.py:score")
    with pytest.raises(UserError, match="defines no function 'nope'"):
        load_reward_function(_fn_file(tmp_path, "x = 1\n").replace(":score", ":nope"))
    with pytest.raises(UserError, match="importing .* failed: SyntaxError"):
        load_reward_function(_fn_file(tmp_path, "def score(:\n"))


def test_reward_config_checks_its_keys():
    with pytest.raises(ValueError, match="path is required"):
        RewardConfig(kind="model")
    with pytest.raises(ValueError, match="at least 2 paths"):
        RewardConfig(kind="ensemble", paths=("a",))
    with pytest.raises(ValueError, match="paths belongs to kind: ensemble"):
        RewardConfig(kind="model", path="a", paths=("a", "b"))
    with pytest.raises(ValueError, match="file.py:function_name"):
        RewardConfig(kind="function", function="no_colon")
    from alignrl.registry import Component

    with pytest.raises(ValueError, match="aggregate combines an ensemble's members"):
        RewardConfig(kind="model", path="a", aggregate=Component("wco", None))
