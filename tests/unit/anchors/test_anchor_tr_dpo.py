import pytest
import torch

from alignrl.anchors.common import AnchorUpdate
from alignrl.anchors.tr_dpo import TRDPOParams, tr_dpo
from alignrl.registry import ANCHORS


def _t(*xs, dtype=torch.float64):
    return torch.tensor(xs, dtype=dtype)


def test_registered_with_params():
    entry = ANCHORS.entry("tr_dpo")
    assert entry.fn is tr_dpo and entry.params is TRDPOParams


def test_soft_sync_every_tau_steps_by_hand():
    ref, policy = {"w": _t(0.0, 4.0)}, {"w": _t(10.0, 0.0)}
    p = TRDPOParams(alpha=0.6, sync_steps=3)
    for step in (1, 2):
        assert tr_dpo(ref, policy, step, p) == AnchorUpdate()
    assert torch.equal(ref["w"], _t(0.0, 4.0))
    # step 3: 0.6·[10, 0] + 0.4·[0, 4] = [6, 1.6]
    assert tr_dpo(ref, policy, 3, p) == AnchorUpdate(anchor=True)
    torch.testing.assert_close(ref["w"], _t(6.0, 1.6), rtol=0, atol=1e-15)


def test_hard_sync_copies_exactly():
    g = torch.Generator().manual_seed(0)
    ref = {"w": torch.randn(5, 5, generator=g, dtype=torch.float64)}
    policy = {"w": torch.randn(5, 5, generator=g, dtype=torch.float64)}
    tr_dpo(ref, policy, 4, TRDPOParams(alpha=1.0, sync_steps=2))
    assert torch.equal(ref["w"], policy["w"]) and ref["w"] is not policy["w"]


def test_bf16_reference_and_params():
    ref, policy = {"w": torch.zeros(3, dtype=torch.bfloat16)}, {"w": torch.ones(3, dtype=torch.bfloat16)}
    tr_dpo(ref, policy, 1, TRDPOParams(alpha=0.5, sync_steps=1))
    assert ref["w"].dtype == torch.bfloat16 and torch.equal(ref["w"], torch.full((3,), 0.5, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="alpha"):
        TRDPOParams(alpha=1.2)
    with pytest.raises(ValueError, match="sync_steps"):
        TRDPOParams(sync_steps=0)
