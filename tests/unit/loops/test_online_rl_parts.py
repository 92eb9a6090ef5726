"""The online-RL driver's batch building, reward shaping, dynamic sampling and weight-sync buckets."""

import pytest
import torch

from alignrl.actors.rollout import layer_key, weight_buckets
from alignrl.loops.online_rl import _select_groups, build_batch, keep_informative_groups, overlong_shaping
from alignrl.rollout.base import Completion


def _completion(ids, logps):
    return Completion(text="", token_ids=tuple(ids), logprobs=tuple(logps))


def test_build_batch_aligns_rollout_logprobs_with_the_completion_tokens():
    batch = build_batch([[1, 2, 3], [4]], [_completion([7, 8], [-0.5, -0.25]), _completion([9, 10, 11], [-1.0, -2.0, -3.0])],
                        pad_id=0)
    t = batch.tokens
    assert t.input_ids.tolist() == [[1, 2, 3, 7, 8], [4, 9, 10, 11, 0]]
    assert t.attention_mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]
    assert t.loss_mask.tolist() == [[False, False, False, True, True], [False, True, True, True, False]]
    assert batch.rows["logp_rollout"].tolist() == [[0, 0, 0, -0.5, -0.25], [0, -1.0, -2.0, -3.0, 0]]


def test_overlong_shaping_is_zero_before_the_buffer_and_linear_inside_it():
    lengths = torch.tensor([2, 6, 7, 8, 10])
    shaped = overlong_shaping(lengths, max_new_tokens=8, buffer=4, penalty=1.0)
    assert shaped.tolist() == pytest.approx([0.0, -0.5, -0.75, -1.0, -1.0])
    assert overlong_shaping(lengths, 8, 0, 1.0).abs().sum() == 0


def test_dynamic_sampling_keeps_groups_with_reward_spread_and_tops_up_in_order():
    rewards = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0, 0.0])  # groups of 2: all-equal, mixed, all-equal
    keep = keep_informative_groups(rewards, 2)
    assert keep.tolist() == [False, True, False]
    b1 = build_batch([[1]] * 6, [_completion([2 + i], [-0.1 * i]) for i in range(6)], pad_id=0)
    rewards2 = torch.tensor([0.0, 1.0, 1.0, 0.0])
    b2 = build_batch([[1]] * 4, [_completion([20 + i, 30], [-1.0, -1.0]) for i in range(4)], pad_id=0)
    parts = [(b1, rewards, rewards, keep), (b2, rewards2, rewards2, keep_informative_groups(rewards2, 2))]
    batch, r, _ = _select_groups(parts, n_groups=3, g=2, pad_id=0)
    # the three informative groups: b1's group 1, b2's groups 0 and 1, in rollout order; padded to one width
    assert r.tolist() == [0.0, 1.0, 0.0, 1.0, 1.0, 0.0]
    assert batch.tokens.input_ids[:, 1].tolist() == [4, 5, 20, 21, 22, 23]
    assert batch.tokens.input_ids.shape == (6, 3)
    batch, r, _ = _select_groups(parts[:1], n_groups=2, g=2, pad_id=0)  # too few: topped up with the first other
    assert r.tolist() == [1.0, 1.0, 0.0, 1.0]  # group 0 (top-up) and group 1, in rollout order


def test_weight_buckets_hold_whole_layers_under_the_cap():
    state = {}
    for i in range(3):
        for part in ("self_attn.q_proj", "self_attn.k_proj", "mlp.up_proj"):
            state[f"model.layers.{i}.{part}.weight"] = torch.zeros(16, 16)  # 1 KiB each, 3 KiB per layer
    state["model.norm.weight"] = torch.zeros(16)
    buckets = weight_buckets(state, bucket_bytes=7 * 1024)
    assert [len(b) for b in buckets] == [6, 4]  # layers 0+1 (6 KiB), then layer 2 + norm
    assert [n for b in buckets for n, _ in b] == list(state)
    for b in buckets:
        assert len({layer_key(n) for n, _ in b if "layers" in n}) in (1, 2)
    assert len(weight_buckets(state, bucket_bytes=1)) == 4  # a layer bigger than the cap gets its own bucket
    assert layer_key("model.layers.12.mlp.up_proj.weight") == "model.layers.12"
    assert layer_key("lm_head.weight") == "lm_head"


def test_full_anchor_divergence_is_the_exact_per_token_divergence_of_the_sampling_distributions():
    from alignrl.objectives.online_rl import full_anchor_divergence

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 6, generator=g, dtype=torch.float64, requires_grad=True)
    anchor = torch.randn(2, 4, 6, generator=g, dtype=torch.float64)
    d = full_anchor_divergence(logits, anchor, "reverse_kl")
    assert d.shape == (2, 4) and torch.all(d[:, 0] == 0)
    p, q = logits.log_softmax(-1), anchor.log_softmax(-1)
    want = (p.exp() * (p - q)).sum(-1)[:, :-1]  # token t is drawn from the distribution at position t - 1
    assert torch.allclose(d[:, 1:], want, atol=1e-12)
    d.sum().backward()
    assert logits.grad is not None and torch.all(logits.grad[:, -1] == 0)  # the last position predicts nothing


def test_weight_transport_round_trips_every_dtype_and_drops_tied_copies():
    import ray.cloudpickle as pickle

    from alignrl.actors.rollout import distinct_tensors, from_transport, to_transport

    embed = torch.randn(5, 3)
    state = {"model.embed_tokens.weight": embed, "model.norm.weight": torch.randn(3).to(torch.bfloat16),
             "lm_head.weight": embed, "x.half": torch.randn(2, 2).half()}
    kept = distinct_tensors(state)
    assert list(kept) == ["model.embed_tokens.weight", "model.norm.weight", "x.half"]  # the tied head is dropped
    sent = pickle.loads(pickle.dumps(to_transport(list(kept.items()))))
    back = dict(from_transport(sent))
    for name, t in kept.items():
        assert back[name].dtype == t.dtype and torch.equal(back[name], t), name
