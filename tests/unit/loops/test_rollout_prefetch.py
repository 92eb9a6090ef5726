"""RolloutPrefetch (rollout.overlap): the next step's batch is collected in a driver thread while this step
trains; the weight sync must wait until that generation has left the rollout workers."""

import threading

import pytest

from alignrl.errors import UserError
from alignrl.loops.online_rl import RolloutPrefetch


def test_take_returns_the_prefetched_result_only_for_its_step():
    prefetch = RolloutPrefetch()
    try:
        assert prefetch.take(1) is None  # nothing started: the step collects its batch itself

        def collect(*, on_generated):
            on_generated()
            return "batch-2"

        prefetch.start(2, collect)
        assert prefetch.take(3) is None  # another step's batch is not handed out
        assert prefetch.take(2) == "batch-2"
        assert prefetch.take(2) is None  # taken once
    finally:
        prefetch.close()


def test_wait_generated_blocks_until_generation_is_done_not_until_scoring_is():
    prefetch = RolloutPrefetch()
    generated, release_scoring, order = threading.Event(), threading.Event(), []

    def collect(*, on_generated):
        generated.wait(5)
        order.append("generated")
        on_generated()
        release_scoring.wait(5)  # scoring still running while the driver syncs weights
        order.append("scored")
        return "batch"

    try:
        prefetch.start(5, collect)
        waiter = threading.Thread(target=lambda: (prefetch.wait_generated(), order.append("sync")))
        waiter.start()
        waiter.join(0.2)
        assert waiter.is_alive()  # the sync waits while the rollout workers are busy
        generated.set()
        waiter.join(5)
        assert not waiter.is_alive()
        assert order == ["generated", "sync"]
        release_scoring.set()
        assert prefetch.take(5) == "batch"
        assert order == ["generated", "sync", "scored"]
    finally:
        prefetch.close()


def test_an_error_in_the_prefetch_frees_the_sync_and_reaches_the_step():
    prefetch = RolloutPrefetch()

    def collect(*, on_generated):
        try:
            raise UserError("rollout worker(s) [0] died during generate")
        finally:
            on_generated()

    try:
        prefetch.start(4, collect)
        prefetch.wait_generated()  # returns: the error does not leave the driver waiting forever
        with pytest.raises(UserError, match="died during generate"):
            prefetch.take(4)
    finally:
        prefetch.close()


def test_collect_signals_generated_even_when_the_rollout_fails():
    from types import SimpleNamespace

    from alignrl.loops.online_rl import _collect
    from alignrl.tasks.base import Example

    class DeadRollout:
        def generate(self, prompts, sampling):
            raise UserError("rollout worker(s) [0] died during generate")

    calls = []
    cfg = SimpleNamespace(seed=0, rollout=SimpleNamespace(max_new_tokens=4))
    params = SimpleNamespace(group_size=2)
    with pytest.raises(UserError, match="died"):
        _collect(1, cfg, params, "arithmetic", [Example(prompt="1+1=", completion="2", answer="2")], iter(()), None, DeadRollout(),
                 {}, {"n": 2}, on_generated=lambda: calls.append("generated"))
    assert calls == ["generated"]
