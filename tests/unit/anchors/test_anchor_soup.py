import torch

from alignrl.anchors.common import AnchorUpdate
from alignrl.anchors.soup import SoupParams, build_soup, soup
from alignrl.registry import ANCHORS


def _sd(seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return {"w": torch.randn(3, 4, generator=g).to(dtype), "b": torch.randn(4, generator=g).to(dtype)}


def test_registered_with_params():
    entry = ANCHORS.entry("soup")
    assert entry.fn is soup and entry.params is SoupParams


def test_salsa_two_ingredients_by_hand():
    a = {"w": torch.tensor([0.0, 4.0], dtype=torch.float64)}
    b = {"w": torch.tensor([2.0, 0.0], dtype=torch.float64)}
    # uniform: ([0, 4] + [2, 0]) / 2 = [1, 2];  α = 0.25: 0.25·[0, 4] + 0.75·[2, 0] = [1.5, 1]
    torch.testing.assert_close(build_soup([a, b], SoupParams())["w"], torch.tensor([1.0, 2.0], dtype=torch.float64))
    out = build_soup([a, b], SoupParams(weights=(0.25, 0.75)))["w"]
    torch.testing.assert_close(out, torch.tensor([1.5, 1.0], dtype=torch.float64), rtol=0, atol=1e-15)


def test_soup_of_identical_dicts_is_identity_and_dtype_kept():
    sd = _sd(0, torch.bfloat16)
    out = build_soup([sd, {k: v.clone() for k, v in sd.items()}], SoupParams())
    for k in sd:
        assert out[k].dtype == torch.bfloat16 and torch.equal(out[k], sd[k])


def test_rule_keeps_the_soup_fixed():
    anchor, policy = _sd(0), _sd(1)
    before = {k: v.clone() for k, v in anchor.items()}
    assert soup(anchor, policy, 7, SoupParams()) == AnchorUpdate()
    assert all(torch.equal(anchor[k], before[k]) for k in anchor)
