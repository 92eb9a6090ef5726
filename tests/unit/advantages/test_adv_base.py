"""Shared advantage machinery: inputs validation, reward placement, group statistics, whitening, registry."""

import dataclasses

import pytest
import torch

import alignrl.advantages  # noqa: F401  (registers the estimators)
from alignrl.advantages.base import (
    AdvantageInputs,
    AdvantageOut,
    contiguous_groups,
    dense_rewards,
    group_mean_std,
    last_token_onehot,
    masked_whiten,
    sequence_returns,
)
from alignrl.registry import ADVANTAGES

F64 = torch.float64
NAMES = ["baseline", "gae", "grpo", "reinforce_pp", "rloo"]


def test_all_estimators_registered_with_frozen_params_and_docstrings():
    assert set(NAMES) <= set(ADVANTAGES.names())
    for name in NAMES:
        entry = ADVANTAGES.entry(name)
        assert entry.fn.__name__ == f"{name}_advantages"
        assert "Ref" in entry.fn.__doc__ and "Args" in entry.fn.__doc__ and "Returns" in entry.fn.__doc__
        p = entry.params()
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(p, dataclasses.fields(p)[0].name, None)


def test_uniform_signature_every_estimator_returns_masked_b_t():
    torch.manual_seed(0)
    mask = torch.rand(6, 5) > 0.3
    x = AdvantageInputs(
        rewards=torch.randn(6, dtype=F64),
        mask=mask,
        token_rewards=torch.randn(6, 5, dtype=F64),
        values=torch.randn(6, 5, dtype=F64),
        group_index=contiguous_groups(6, 3),
    )
    for name in NAMES:
        out = ADVANTAGES.get(name)(x, ADVANTAGES.entry(name).params())
        assert isinstance(out, AdvantageOut) and out.adv.shape == (6, 5) and out.adv.dtype == F64
        assert (out.adv[~mask] == 0).all()
        assert (out.returns is not None) == (name == "gae")


def test_inputs_reject_bad_shapes():
    with pytest.raises(ValueError, match="rewards must be"):
        AdvantageInputs(rewards=torch.zeros(3), mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="values must be"):
        AdvantageInputs(rewards=torch.zeros(2), mask=torch.ones(2, 4, dtype=torch.bool), values=torch.zeros(2, 3))
    with pytest.raises(ValueError, match="group_index"):
        AdvantageInputs(rewards=torch.zeros(2), mask=torch.ones(2, 4, dtype=torch.bool), group_index=torch.zeros(3))


def test_contiguous_groups():
    assert contiguous_groups(6, 2).tolist() == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="multiple"):
        contiguous_groups(5, 2)


def test_last_token_onehot_right_padding_gap_and_empty_row():
    mask = torch.tensor([[1, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0], [0, 1, 1, 1]], dtype=torch.bool)
    expected = [[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 1]]
    assert last_token_onehot(mask).long().tolist() == expected


def test_dense_rewards_and_sequence_return_by_hand():
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    tok = torch.tensor([[-0.1, -0.2, 99.0], [0.0, -0.5, 0.25]], dtype=F64)  # 99 sits on a masked token: ignored
    x = AdvantageInputs(rewards=torch.tensor([1.0, 2.0], dtype=F64), mask=mask, token_rewards=tok)
    # row 0: [-0.1, -0.2 + 1, 0]; row 1: [0, -0.5, 0.25 + 2]
    torch.testing.assert_close(
        dense_rewards(x), torch.tensor([[-0.1, 0.8, 0.0], [0.0, -0.5, 2.25]], dtype=F64), rtol=0, atol=1e-15
    )
    # R = r + Σ token rewards: 1 − 0.3 = 0.7; 2 − 0.25 = 1.75
    torch.testing.assert_close(sequence_returns(x), torch.tensor([0.7, 1.75], dtype=F64), rtol=0, atol=1e-15)


def test_group_mean_std_matches_explicit_loops_with_unsorted_ids():
    torch.manual_seed(1)
    x = torch.randn(10, dtype=F64)
    gid = torch.tensor([7, 3, 7, 3, 3, 9, 7, 1, 1, 3])  # unsorted, non-contiguous ids; group 9 has one member
    for unbiased in (True, False):
        mean, std, n = group_mean_std(x, gid, unbiased)
        for i in range(10):
            members = [x[j].item() for j in range(10) if gid[j] == gid[i]]
            mu = sum(members) / len(members)
            dof = max(len(members) - 1, 1) if unbiased else len(members)
            sd = (sum((v - mu) ** 2 for v in members) / dof) ** 0.5
            assert mean[i].item() == pytest.approx(mu, abs=1e-14)
            assert std[i].item() == pytest.approx(sd, abs=1e-14)
            assert n[i].item() == len(members)


def test_masked_whiten_zero_mean_unit_std_on_the_mask():
    torch.manual_seed(2)
    x = torch.randn(4, 6, dtype=F64) * 3 + 5
    mask = torch.rand(4, 6) > 0.4
    w = masked_whiten(x, mask, eps=0.0)
    vals = w[mask]
    assert vals.mean().item() == pytest.approx(0.0, abs=1e-13)
    assert vals.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-13)
    assert (w[~mask] == 0).all()
