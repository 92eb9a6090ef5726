"""DPO, cDPO and robust DPO: hand values, ε = 0 equivalences, rDPO unbiasedness, analytic gradients."""

import pytest
import torch
import torch.nn.functional as F

from alignrl.objectives.dpo import CDPOParams, DPOParams, RobustDPOParams, cdpo_loss, dpo_loss, robust_dpo_loss
from alignrl.objectives.preference_base import PreferenceInputs
from alignrl.registry import PREFERENCE_LOSSES

F64 = torch.float64


def _pairs(seed=0, B=8, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    lw = (-torch.rand(B, generator=g, dtype=F64) * 20).requires_grad_()
    ll = (-torch.rand(B, generator=g, dtype=F64) * 20).requires_grad_()
    rw = lw.detach() + torch.randn(B, generator=g, dtype=F64) * scale
    rl = ll.detach() + torch.randn(B, generator=g, dtype=F64) * scale
    lens = torch.randint(1, 30, (2, B), generator=g)
    return PreferenceInputs(logp_chosen=lw, logp_rejected=ll, logp_ref_chosen=rw, logp_ref_rejected=rl,
                            len_chosen=lens[0], len_rejected=lens[1])


def _hand():
    # pair 0: ρ_w = −2 − (−3) = 1, ρ_l = −4 − (−3) = −1, h = 2;  pair 1: swapped, h = −2
    lw = torch.tensor([-2.0, -4.0], dtype=F64, requires_grad=True)
    ll = torch.tensor([-4.0, -2.0], dtype=F64, requires_grad=True)
    ref = torch.tensor([-3.0, -3.0], dtype=F64)
    return PreferenceInputs(logp_chosen=lw, logp_rejected=ll, logp_ref_chosen=ref, logp_ref_rejected=ref)


def test_registered():
    for name, fn, params in [("dpo", dpo_loss, DPOParams), ("cdpo", cdpo_loss, CDPOParams),
                             ("robust_dpo", robust_dpo_loss, RobustDPOParams)]:
        entry = PREFERENCE_LOSSES.entry(name)
        assert entry.fn is fn and entry.params is params


def test_dpo_by_hand():
    out = dpo_loss(_hand(), DPOParams(beta=0.5))
    # z = β·h = ±1: −log σ(1) = 0.31326168751822286, −log σ(−1) = 1.3132616875182228, mean 0.8132616875182228
    assert out.loss.item() == pytest.approx(0.8132616875182228, abs=1e-15)
    # rewards β·ρ: chosen (0.5, −0.5), rejected (−0.5, 0.5) -> means 0, 0; margins (1, −1) -> 0; accuracy 1/2
    m = {k: v.item() for k, v in out.metrics.items()}
    assert m == pytest.approx({"reward_chosen": 0.0, "reward_rejected": 0.0, "reward_margin": 0.0,
                               "reward_accuracy": 0.5}, abs=1e-15)
    assert all(not v.requires_grad for v in out.metrics.values())


def test_cdpo_and_robust_by_hand():
    x = _hand()
    # cDPO ε = 0.25: −log σ(z) + ε·z -> (0.31326… + 0.25 + 1.31326… − 0.25)/2 = 0.8132616875182228 (the ±z cancel)
    assert cdpo_loss(x, CDPOParams(beta=0.5, label_smoothing=0.25)).loss.item() == pytest.approx(
        0.8132616875182228, abs=1e-15)
    # rDPO ε = 0.25, z = 1: [0.75·0.31326… − 0.25·1.31326…]/0.5 = (0.234946… − 0.328315…)/0.5 = −0.18673831248177712
    #                z = −1: [0.75·1.31326… − 0.25·0.31326…]/0.5 = (0.984946… − 0.078315…)/0.5 = 1.8132616875182228
    one = PreferenceInputs(**{k: getattr(x, k)[:1] for k in ("logp_chosen", "logp_rejected", "logp_ref_chosen",
                                                              "logp_ref_rejected")})
    p = RobustDPOParams(beta=0.5, label_smoothing=0.25)
    assert robust_dpo_loss(one, p).loss.item() == pytest.approx(-0.18673831248177712, abs=1e-15)
    assert robust_dpo_loss(x, p).loss.item() == pytest.approx((-0.18673831248177712 + 1.8132616875182228) / 2,
                                                              abs=1e-15)


def test_epsilon_zero_is_dpo():
    x = _pairs(1)
    base = dpo_loss(x, DPOParams(beta=0.3)).loss
    for loss in (cdpo_loss(x, CDPOParams(beta=0.3, label_smoothing=0.0)).loss,
                 robust_dpo_loss(x, RobustDPOParams(beta=0.3, label_smoothing=0.0)).loss):
        torch.testing.assert_close(loss, base, rtol=0, atol=1e-15)


def test_robust_is_unbiased_under_label_flips():
    # E_flip[ℓ̂] = (1−ε)·ℓ̂(h) + ε·ℓ̂(−h) must equal the clean −log σ(β·h) for every pair
    x, eps, beta = _pairs(2), 0.2, 0.4
    swapped = PreferenceInputs(logp_chosen=x.logp_rejected, logp_rejected=x.logp_chosen,
                               logp_ref_chosen=x.logp_ref_rejected, logp_ref_rejected=x.logp_ref_chosen)
    p = RobustDPOParams(beta=beta, label_smoothing=eps)
    for i in range(4):
        xi = PreferenceInputs(**{k: getattr(x, k)[i:i + 1] for k in ("logp_chosen", "logp_rejected",
                                                                     "logp_ref_chosen", "logp_ref_rejected")})
        si = PreferenceInputs(**{k: getattr(swapped, k)[i:i + 1] for k in ("logp_chosen", "logp_rejected",
                                                                           "logp_ref_chosen", "logp_ref_rejected")})
        expected = (1 - eps) * robust_dpo_loss(xi, p).loss + eps * robust_dpo_loss(si, p).loss
        torch.testing.assert_close(expected, dpo_loss(xi, DPOParams(beta=beta)).loss, rtol=0, atol=1e-14)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_gradient_matches_docstring(eps):
    # ∂L/∂log π(y_w) = −∂L/∂log π(y_l) = −(β/B)·(σ(−β·h) − ε)  (cDPO; ε = 0 is DPO's)
    x, beta = _pairs(3), 0.7
    out = cdpo_loss(x, CDPOParams(beta=beta, label_smoothing=eps))
    gw, gl = torch.autograd.grad(out.loss, (x.logp_chosen, x.logp_rejected))
    h = (x.logp_chosen - x.logp_ref_chosen - x.logp_rejected + x.logp_ref_rejected).detach()
    analytic = -(beta / h.numel()) * (torch.sigmoid(-beta * h) - eps)
    torch.testing.assert_close(gw, analytic, rtol=0, atol=1e-16)
    torch.testing.assert_close(gl, -analytic, rtol=0, atol=1e-16)


def test_robust_gradient_matches_docstring():
    x, beta, eps = _pairs(4), 0.7, 0.2
    gw, = torch.autograd.grad(robust_dpo_loss(x, RobustDPOParams(beta=beta, label_smoothing=eps)).loss,
                              (x.logp_chosen,))
    z = beta * (x.logp_chosen - x.logp_ref_chosen - x.logp_rejected + x.logp_ref_rejected).detach()
    analytic = -(beta / z.numel()) * ((1 - eps) * torch.sigmoid(-z) + eps * torch.sigmoid(z)) / (1 - 2 * eps)
    torch.testing.assert_close(gw, analytic, rtol=0, atol=1e-16)


def test_length_normalize():
    x, beta = _pairs(5), 0.5
    rho_w = (x.logp_chosen - x.logp_ref_chosen) / x.len_chosen
    rho_l = (x.logp_rejected - x.logp_ref_rejected) / x.len_rejected
    expected = -F.logsigmoid(beta * (rho_w - rho_l)).mean()
    torch.testing.assert_close(dpo_loss(x, DPOParams(beta=beta, length_normalize=True)).loss, expected,
                               rtol=0, atol=1e-15)


def test_missing_reference_and_bad_params_raise():
    x = PreferenceInputs(logp_chosen=torch.zeros(2), logp_rejected=torch.zeros(2))
    with pytest.raises(ValueError, match="logp_ref_chosen"):
        dpo_loss(x, DPOParams())
    with pytest.raises(ValueError, match="beta"):
        DPOParams(beta=0.0)
    with pytest.raises(ValueError, match="label_smoothing"):
        CDPOParams(label_smoothing=0.6)
    with pytest.raises(ValueError, match="label_smoothing"):
        RobustDPOParams(label_smoothing=0.5)


def test_bf16_inputs_compute_in_fp32():
    x = _pairs(6)
    xb = PreferenceInputs(**{k: getattr(x, k).detach().to(torch.bfloat16) for k in ("logp_chosen", "logp_rejected",
                                                                                     "logp_ref_chosen",
                                                                                     "logp_ref_rejected")})
    assert dpo_loss(xb, DPOParams()).loss.dtype == torch.float32
