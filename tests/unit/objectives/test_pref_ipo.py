"""IPO: hand values, minimum at margin 1/(2τ), analytic gradient, length normalisation."""

import pytest
import torch

from alignrl.objectives.ipo import IPOParams, ipo_loss
from alignrl.objectives.preference_base import PreferenceInputs
from alignrl.registry import PREFERENCE_LOSSES

F64 = torch.float64


def _pairs(seed=0, B=8):
    g = torch.Generator().manual_seed(seed)
    lw = (-torch.rand(B, generator=g, dtype=F64) * 20).requires_grad_()
    ll = (-torch.rand(B, generator=g, dtype=F64) * 20).requires_grad_()
    rw = lw.detach() + torch.randn(B, generator=g, dtype=F64) * 2
    rl = ll.detach() + torch.randn(B, generator=g, dtype=F64) * 2
    lens = torch.randint(1, 30, (2, B), generator=g)
    return PreferenceInputs(logp_chosen=lw, logp_rejected=ll, logp_ref_chosen=rw, logp_ref_rejected=rl,
                            len_chosen=lens[0], len_rejected=lens[1])


def _margin(h):
    """Pairs with ρ(y_w) − ρ(y_l) = h exactly (ρ_l = 0, refs 0)."""
    h = torch.as_tensor(h, dtype=F64)
    return PreferenceInputs(logp_chosen=h.clone().requires_grad_(), logp_rejected=torch.zeros_like(h),
                            logp_ref_chosen=torch.zeros_like(h), logp_ref_rejected=torch.zeros_like(h))


def test_registered():
    entry = PREFERENCE_LOSSES.entry("ipo")
    assert entry.fn is ipo_loss and entry.params is IPOParams


def test_by_hand():
    # τ = 0.25 -> target 1/(2·0.25) = 2;  h = 3: (3 − 2)² = 1;  h = 0: (0 − 2)² = 4;  mean 2.5
    out = ipo_loss(_margin([3.0, 0.0]), IPOParams(beta=0.25))
    assert out.loss.item() == pytest.approx(2.5, abs=1e-15)
    # rewards τ·ρ: chosen (0.75, 0) -> 0.375; rejected 0; accuracy: only pair 0 strictly wins -> 0.5
    assert out.metrics["reward_chosen"].item() == pytest.approx(0.375, abs=1e-15)
    assert out.metrics["reward_accuracy"].item() == pytest.approx(0.5, abs=1e-15)


@pytest.mark.parametrize("beta", [0.05, 0.1, 0.5, 2.0])
def test_minimum_at_margin_one_over_two_beta(beta):
    target = 1.0 / (2.0 * beta)
    x = _margin([target])
    out = ipo_loss(x, IPOParams(beta=beta))
    (g,) = torch.autograd.grad(out.loss, (x.logp_chosen,))
    assert out.loss.item() == pytest.approx(0.0, abs=1e-24) and g.abs().item() < 1e-12
    for d in (0.3, -0.3):  # a parabola: loss(target + d) = d²
        assert ipo_loss(_margin([target + d]), IPOParams(beta=beta)).loss.item() == pytest.approx(d * d, abs=1e-12)


def test_gradient_matches_docstring():
    # ∂L/∂log π(y_w) = −∂L/∂log π(y_l) = (2/B)·(h − 1/(2τ))
    x, beta = _pairs(1), 0.2
    gw, gl = torch.autograd.grad(ipo_loss(x, IPOParams(beta=beta)).loss, (x.logp_chosen, x.logp_rejected))
    h = (x.logp_chosen - x.logp_ref_chosen - x.logp_rejected + x.logp_ref_rejected).detach()
    analytic = (2.0 / h.numel()) * (h - 1.0 / (2.0 * beta))
    torch.testing.assert_close(gw, analytic, rtol=0, atol=1e-15)
    torch.testing.assert_close(gl, -analytic, rtol=0, atol=1e-15)


def test_length_normalize_by_hand():
    # ρ_w = 6 over 3 tokens -> 2; ρ_l = −4 over 4 tokens -> −1; h = 3; τ = 0.5 -> target 1; (3 − 1)² = 4
    x = PreferenceInputs(logp_chosen=torch.tensor([6.0], dtype=F64), logp_rejected=torch.tensor([-4.0], dtype=F64),
                         logp_ref_chosen=torch.zeros(1, dtype=F64), logp_ref_rejected=torch.zeros(1, dtype=F64),
                         len_chosen=torch.tensor([3]), len_rejected=torch.tensor([4]))
    assert ipo_loss(x, IPOParams(beta=0.5, length_normalize=True)).loss.item() == pytest.approx(4.0, abs=1e-15)
    with pytest.raises(ValueError, match="len_chosen"):
        ipo_loss(_margin([1.0]), IPOParams(length_normalize=True))
