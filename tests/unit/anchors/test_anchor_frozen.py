import torch

from alignrl.anchors.common import AnchorUpdate
from alignrl.anchors.frozen import FrozenParams, frozen
from alignrl.registry import ANCHORS


def test_registered_with_params():
    entry = ANCHORS.entry("frozen")
    assert entry.fn is frozen and entry.params is FrozenParams


def test_is_a_no_op():
    anchor = {"w": torch.tensor([1.0, 2.0], dtype=torch.float64)}
    policy = {"w": torch.tensor([5.0, 6.0], dtype=torch.float64)}
    w = anchor["w"]
    for step in (1, 2, 100):
        assert frozen(anchor, policy, step, FrozenParams()) == AnchorUpdate()
    assert anchor["w"] is w and torch.equal(w, torch.tensor([1.0, 2.0], dtype=torch.float64))
    assert torch.equal(policy["w"], torch.tensor([5.0, 6.0], dtype=torch.float64))
