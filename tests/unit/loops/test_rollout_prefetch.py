"""RolloutPrefetch (rollout.max_staleness / overlap): future steps' batches are collected in a driver thread while
this step trains; the weight sync must wait until a generation has left the rollout workers, each batch records the
policy version that sampled it, and queueing stops at the next draining step."""

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
        assert prefetch.take(2) == ("batch-2", 0)  # and the weights version that generated it
        assert prefetch.take(2) is None  # taken once
    finally:
        prefetch.close()


def test_a_sync_waits_until_generation_is_done_not_until_scoring_is():
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
        waiter = threading.Thread(target=lambda: prefetch.sync(lambda: order.append("sync")))
        waiter.start()
        waiter.join(0.2)
        assert waiter.is_alive()  # the sync waits while the rollout workers are busy
        generated.set()
        waiter.join(5)
        assert not waiter.is_alive()
        assert order == ["generated", "sync"]
        release_scoring.set()
        assert prefetch.take(5) == ("batch", 0)
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
        prefetch.sync(lambda: None)  # returns: the error does not leave the driver waiting forever
        with pytest.raises(UserError, match="died during generate"):
            prefetch.take(4)
    finally:
        prefetch.close()


@pytest.mark.parametrize("streamed", [True, False])
def test_collect_signals_generated_even_when_the_rollout_fails(streamed):
    from types import SimpleNamespace

    from alignrl.loops.online_rl import _collect
    from alignrl.tasks.base import Example

    class DeadRollout:
        def generate(self, prompts, sampling):
            raise UserError("rollout worker(s) [0] died during generate")

        generate_parts = generate  # streamed scoring starts the parts this way

    calls = []
    cfg = SimpleNamespace(seed=0, anchor_names=(), anchors=(),
                          rollout=SimpleNamespace(max_new_tokens=4, stream_scoring=streamed))
    params = SimpleNamespace(group_size=2, dynamic_sampling=False)
    with pytest.raises(UserError, match="died"):
        _collect(1, cfg, params, "arithmetic", [Example(prompt="1+1=", completion="2", answer="2")], iter(()), None, DeadRollout(),
                 {}, {"n": 2}, on_generated=lambda: calls.append("generated"))
    assert calls == ["generated"]


def test_out_of_order_a_sync_waits_for_the_generation_and_later_generations_see_the_new_version():
    prefetch = RolloutPrefetch(version=3, in_order=False)
    gate, order = threading.Event(), []

    def slow(*, on_generated):
        gate.wait(5)
        order.append("generated 4")
        on_generated()
        return "b4"

    def quick(*, on_generated):
        order.append("generated 5")
        return "b5"

    try:
        prefetch.start(4, slow)
        prefetch.start(5, quick)
        assert prefetch.last_started == 5
        syncer = threading.Thread(target=lambda: prefetch.sync(lambda: order.append("sync")))
        syncer.start()
        syncer.join(0.2)
        assert syncer.is_alive() and order == []  # the sync waits for the generation on the workers
        gate.set()
        syncer.join(5)
        assert prefetch.take(4) == ("b4", 3) and prefetch.version == 4
        got5 = prefetch.take(5)
        assert order.index("sync") < order.index("generated 5")  # no generation while the weights load ...
        assert got5 == ("b5", 4)  # ... so step 5's batch was sampled by the synced weights: 0 steps stale
    finally:
        prefetch.close()


def test_prefetch_stops_at_the_staleness_bound_and_at_draining_steps():
    from types import SimpleNamespace

    from alignrl.loops.online_rl import _prefetch_until

    cfg = SimpleNamespace(train=SimpleNamespace(steps=20, eval_every=10, checkpoint_every=0),
                          rollout=SimpleNamespace(staleness_bound=3))
    assert _prefetch_until(1, cfg, has_eval=True) == 4  # 3 ahead
    assert _prefetch_until(8, cfg, has_eval=True) == 10  # not past the eval at 10
    assert _prefetch_until(10, cfg, has_eval=True) == 10  # an eval step queues nothing
    assert _prefetch_until(8, cfg, has_eval=False) == 11  # no eval data: step 10 does not drain
    assert _prefetch_until(19, cfg, has_eval=False) == 20  # the last step drains


def test_in_order_a_sync_waits_for_every_queued_generation():
    prefetch = RolloutPrefetch(version=0)
    gate, order = threading.Event(), []

    def gen(name):
        def collect(*, on_generated):
            gate.wait(5)
            order.append(name)
            on_generated()
            return name
        return collect

    try:
        prefetch.start(2, gen("b2"))
        prefetch.start(3, gen("b3"))
        syncer = threading.Thread(target=lambda: prefetch.sync(lambda: order.append("sync")))
        syncer.start()
        syncer.join(0.2)
        assert syncer.is_alive()
        gate.set()
        syncer.join(5)
        assert order == ["b2", "b3", "sync"]  # both batches were sampled by the weights they were queued under
        assert prefetch.take(2) == ("b2", 0) and prefetch.take(3) == ("b3", 0)
    finally:
        prefetch.close()


def test_a_lost_queued_batch_keeps_its_prompts_and_a_redo_does_not_count_as_a_sync():
    prefetch = RolloutPrefetch(version=3)
    stream = iter([["a", "b"], ["c", "d"]])

    def lost(*, on_generated):
        prefetch.draw(7, stream)
        on_generated()
        raise UserError("rollout worker 0 died during generate")

    def kept(*, on_generated):
        prefetch.draw(8, stream)
        on_generated()
        return "batch-8"

    try:
        prefetch.start(7, lost)
        prefetch.start(8, kept)
        with pytest.raises(UserError, match="died during generate"):
            prefetch.take(7)
        assert prefetch.prompts_of(7) == ["a", "b"]  # the redo samples the prompts the lost batch drew
        assert prefetch.exclusive(lambda: "resynced") == "resynced" and prefetch.version == 3
        assert prefetch.take(8) == ("batch-8", 3)
        with pytest.raises(KeyError):  # a taken batch's prompts are not kept
            prefetch.prompts_of(8)
    finally:
        prefetch.close()
