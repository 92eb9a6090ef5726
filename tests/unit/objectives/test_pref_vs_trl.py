"""Our preference losses against TRL 1.16 on identical random inputs (loss values and gradients).

TRL 1.16 has no standalone ``dpo_loss``: the DPO family lives inline in ``DPOTrainer._compute_loss``. It
is called here as an unbound function with a stand-in ``self`` (config attributes, an identity
accelerator, ``precompute_ref_logps=True`` so the reference log-probs come from ``inputs``) and a
stand-in model whose ``log_probs`` output is our per-token leaf tensor (zero off the completion, as
TRL's fused LM head returns). Everything from the sequence sums to ``loss`` is TRL's own code. Our
losses get the sums of the same leaf, so gradients w.r.t. the per-token log-probs are compared too.
SimPO (and reference-free hinge, cDPO's label-smoothed sigmoid) come from ``CPOTrainer.cpo_loss``,
called the same way; cDPO is fed log-ratios as ``policy_*_logps`` so that CPO's logit is DPO's margin.

| ours                              | TRL 1.16                                      | max abs diff: loss / grad |
|-----------------------------------|-----------------------------------------------|---------------------------|
| dpo                               | DPO sigmoid (= f_divergence_type reverse_kl)  | 0 / 0                     |
| dpo(length_normalize)             | DPO sigmoid_norm                              | 0 / 0                     |
| robust_dpo ε = 0.1, 0.3           | DPO robust, label_smoothing = ε               | 0 / 6.9e-18               |
| ipo(length_normalize)             | DPO ipo (always length-normalised)            | 0 / 0                     |
| hinge                             | DPO hinge                                     | 0 / 0                     |
| f_dpo reverse_kl, forward_kl      | DPO sigmoid, f_divergence_type = same         | 0 / 0                     |
| f_dpo js, β = 2·β_TRL             | DPO sigmoid, f_divergence_type js_divergence  | 0 / 1.7e-18               |
| f_dpo alpha α = .3, .5, 1, 1.5    | DPO sigmoid, alpha_divergence (TRL in fp32)   | 1.2e-7 / 4.9e-8           |
| simpo γ = 0.7, ε = 0, 0.2         | CPO simpo (average log-probs, simpo_gamma, ε) | 0 / 0                     |
| hinge(reference_free)             | CPO hinge                                     | 0 / 0                     |
| cdpo ε = 0, 0.1, 0.4              | CPO sigmoid with label_smoothing ε, on ρ      | 0 / 3.5e-18               |
(observed at the seeds below, float64 unless stated; each test asserts atol 1e-15 on loss and
gradient, except the float32-TRL α rows: 5e-7 / 2e-7.)

Disagreements found, and whose they are:
- TRL ``alpha_divergence`` raises ``KeyError: torch.float64`` in float64: its overflow clamp looks the
  dtype up in a dict with only fp16/bf16/fp32 keys. TRL's bug (a missing key); compared in float32.
- TRL's ``js_divergence`` uses f-DPO Table 1's generator (2·JS); ours is the divergences registry's
  JS = ½·that, so the losses agree at β_ours = 2·β_TRL. A documented convention difference, not a bug.
- TRL 1.16's DPO ``sigmoid`` does not read ``label_smoothing`` (its config documents ε for robust and
  EXO only; earlier TRL versions applied cDPO smoothing there), so cDPO is checked against CPO's
  smoothed sigmoid instead. Not a bug on either side.
- Overflow guards differ (TRL clamps (α−1)·ρ ≤ 80 for α; we clamp |ρ| ≤ 20 for every f): the inputs
  here stay inside both, where the formulas are identical.
Not compared (not implemented here): exo_pair, nca_pair, bco_pair, sppo_hard, aot, aot_unpaired,
apo_zero, apo_down, discopop, sft, WPO weighting, ld_alpha; f-divergences combined with hinge/ipo/robust.
No TRL counterpart: tdpo1, tdpo2, h_dpo, inpo, d2o, copg, dpkd.
"""

from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from alignrl.objectives.dpo import CDPOParams, DPOParams, RobustDPOParams, cdpo_loss, dpo_loss, robust_dpo_loss
from alignrl.objectives.f_dpo import FDPOParams, f_dpo_loss
from alignrl.objectives.hinge import HingeParams, hinge_loss
from alignrl.objectives.ipo import IPOParams, ipo_loss
from alignrl.objectives.preference_base import PreferenceInputs
from alignrl.objectives.simpo import SimPOParams, simpo_loss

F64 = torch.float64
B, T = 8, 12
TOL = 1e-15  # float64 vs float64: same formula, different association at most


@pytest.fixture(scope="module")
def trl_dpo():
    return pytest.importorskip("trl.trainer.dpo_trainer").DPOTrainer._compute_loss


@pytest.fixture(scope="module")
def trl_cpo():
    return pytest.importorskip("trl.experimental.cpo.cpo_trainer").CPOTrainer.cpo_loss


class _Accelerator:
    device = torch.device("cpu")

    def gather(self, x):
        return x

    def gather_for_metrics(self, x):
        return x


def _batch(seed, dtype=F64):
    """TRL-layout inputs (2B rows: chosen then rejected) and a per-token log-prob leaf (2B, T)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (2 * B,), generator=g)
    completion = torch.zeros(2 * B, T + 1, dtype=torch.long)  # column 0 is the prompt token
    for i, n in enumerate(lengths.tolist()):
        completion[i, 1:1 + n] = 1
    tok = (-torch.rand(2 * B, T, generator=g, dtype=F64) * 1.5 * completion[:, 1:]).to(dtype).requires_grad_()
    ref = (tok.detach().sum(1) + torch.randn(2 * B, generator=g, dtype=F64) * 2).to(dtype)
    inputs = {
        "input_ids": torch.zeros(2 * B, T + 1, dtype=torch.long), "attention_mask": torch.ones(2 * B, T + 1),
        "completion_mask": completion, "ref_chosen_logps": ref[:B], "ref_rejected_logps": ref[B:],
    }
    return tok, inputs, lengths


def _ours(tok, inputs, lengths, dtype=F64):
    s = tok.to(dtype).sum(1)
    return PreferenceInputs(logp_chosen=s[:B], logp_rejected=s[B:], logp_ref_chosen=inputs["ref_chosen_logps"].to(dtype),
                            logp_ref_rejected=inputs["ref_rejected_logps"].to(dtype), len_chosen=lengths[:B],
                            len_rejected=lengths[B:])


def _trl_loss(trl_dpo, tok, inputs, *, loss_type, beta, eps=0.0, f_div="reverse_kl", f_alpha=0.5):
    def model(**kwargs):
        z = torch.zeros_like(tok)
        return SimpleNamespace(log_probs=tok, entropy=z, mean_logits=z, is_top1=torch.zeros(tok.shape, dtype=torch.bool))

    fake_self = SimpleNamespace(
        model=SimpleNamespace(training=True), accelerator=_Accelerator(), aux_loss_enabled=False, ld_alpha=None,
        precompute_ref_logps=True, f_divergence_type=f_div, f_alpha_divergence_coef=f_alpha, loss_types=[loss_type],
        loss_weights=[1.0], beta=beta, label_smoothing=eps, use_weighting=False,
        args=SimpleNamespace(discopop_tau=0.05), _metrics=defaultdict(lambda: defaultdict(list)),
        _total_train_tokens=0, _tp_size=1,
    )
    return trl_dpo(fake_self, model, inputs, False), fake_self._metrics["train"]


def _assert_same_as_trl(trl_dpo, seed, ours_fn, *, tol=TOL, gtol=TOL, metrics=True, **trl_kw):
    tok, inputs, lengths = _batch(seed)
    theirs, trl_metrics = _trl_loss(trl_dpo, tok, inputs, **trl_kw)
    (g_theirs,) = torch.autograd.grad(theirs, (tok,))
    out = ours_fn(_ours(tok, inputs, lengths))
    (g_ours,) = torch.autograd.grad(out.loss, (tok,))
    torch.testing.assert_close(out.loss, theirs, rtol=0, atol=tol)
    torch.testing.assert_close(g_ours, g_theirs, rtol=0, atol=gtol)
    if metrics:
        for ours_key, trl_key in [("reward_chosen", "rewards/chosen"), ("reward_rejected", "rewards/rejected"),
                                  ("reward_margin", "rewards/margins"), ("reward_accuracy", "rewards/accuracies")]:
            assert out.metrics[ours_key].item() == pytest.approx(trl_metrics[trl_key][0], abs=1e-14), ours_key


@pytest.mark.parametrize("seed", [0, 1])
def test_sigmoid_is_dpo(trl_dpo, seed):
    _assert_same_as_trl(trl_dpo, seed, lambda x: dpo_loss(x, DPOParams(beta=0.2)), loss_type="sigmoid", beta=0.2)


def test_sigmoid_norm_is_length_normalised_dpo(trl_dpo):
    _assert_same_as_trl(trl_dpo, 2, lambda x: dpo_loss(x, DPOParams(beta=0.5, length_normalize=True)),
             loss_type="sigmoid_norm", beta=0.5)


@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_robust(trl_dpo, eps):
    _assert_same_as_trl(trl_dpo, 3, lambda x: robust_dpo_loss(x, RobustDPOParams(beta=0.3, label_smoothing=eps)),
             loss_type="robust", beta=0.3, eps=eps)


def test_ipo_is_length_normalised_ipo(trl_dpo):
    _assert_same_as_trl(trl_dpo, 4, lambda x: ipo_loss(x, IPOParams(beta=0.4, length_normalize=True)), loss_type="ipo", beta=0.4)


def test_hinge(trl_dpo):
    _assert_same_as_trl(trl_dpo, 5, lambda x: hinge_loss(x, HingeParams(beta=0.3)), loss_type="hinge", beta=0.3)


def test_f_divergence_reverse_and_forward_kl(trl_dpo):
    _assert_same_as_trl(trl_dpo, 6, lambda x: f_dpo_loss(x, FDPOParams(beta=0.2)), loss_type="sigmoid", beta=0.2,
             f_div="reverse_kl")
    _assert_same_as_trl(trl_dpo, 6, lambda x: f_dpo_loss(x, FDPOParams(beta=0.2, divergence="forward_kl")),
             loss_type="sigmoid", beta=0.2, f_div="forward_kl")


def test_f_divergence_js_at_twice_beta(trl_dpo):
    # ours: β·½·log(2u/(1+u)); TRL: β_TRL·log(2u/(1+u)) -> equal at β = 2·β_TRL (rewards then differ by 2: no metrics)
    _assert_same_as_trl(trl_dpo, 7, lambda x: f_dpo_loss(x, FDPOParams(beta=0.4, divergence="js")), loss_type="sigmoid",
             beta=0.2, f_div="js_divergence", metrics=False)


def test_trl_alpha_divergence_fails_in_float64(trl_dpo):
    tok, inputs, _ = _batch(8)
    with pytest.raises(KeyError):
        _trl_loss(trl_dpo, tok, inputs, loss_type="sigmoid", beta=0.2, f_div="alpha_divergence", f_alpha=0.5)


@pytest.mark.parametrize("alpha", [0.5, 0.3, 1.5, 1.0])
def test_f_divergence_alpha_float32_trl(trl_dpo, alpha):
    # TRL runs in float32 (see above); ours in float64 on the same values. Tolerance: float32 rounding of
    # sums of ≤ 12 terms of size ≤ 1.5 and of exp() (ε_32 ≈ 1.2e-7 relative on O(1) losses and O(0.1) grads).
    tok32, inputs32, lengths = _batch(9, dtype=torch.float32)
    theirs, _ = _trl_loss(trl_dpo, tok32, inputs32, loss_type="sigmoid", beta=0.2, f_div="alpha_divergence",
                          f_alpha=alpha)
    (g_theirs,) = torch.autograd.grad(theirs, (tok32,))
    tok = tok32.detach().to(F64).requires_grad_()
    out = f_dpo_loss(_ours(tok, inputs32, lengths), FDPOParams(beta=0.2, divergence="alpha", alpha=alpha))
    (g_ours,) = torch.autograd.grad(out.loss, (tok,))
    torch.testing.assert_close(out.loss, theirs.to(F64), rtol=0, atol=5e-7)
    torch.testing.assert_close(g_ours, g_theirs.to(F64), rtol=0, atol=2e-7)


def _cpo_self(loss_type, beta, eps=0.0, gamma=0.5):
    return SimpleNamespace(alpha=0.0, loss_type=loss_type, beta=beta, label_smoothing=eps, simpo_gamma=gamma,
                           accelerator=_Accelerator())


@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_simpo_vs_cpo(trl_cpo, eps):
    tok, inputs, lengths = _batch(10)
    x = _ours(tok, inputs, lengths)
    # CPO's simpo takes average log-probs (its concatenated_forward uses average_log_prob for simpo)
    avg = tok.sum(1) / lengths.to(F64)
    theirs, rc, rr = trl_cpo(_cpo_self("simpo", beta=2.0, eps=eps, gamma=0.7), avg[:B], avg[B:])
    out = simpo_loss(x, SimPOParams(beta=2.0, gamma=0.7, label_smoothing=eps))
    torch.testing.assert_close(out.loss, theirs.mean(), rtol=0, atol=TOL)
    assert out.metrics["reward_chosen"].item() == pytest.approx(rc.mean().item(), abs=1e-14)
    assert out.metrics["reward_rejected"].item() == pytest.approx(rr.mean().item(), abs=1e-14)
    (g_theirs,) = torch.autograd.grad(theirs.mean(), (tok,))
    (g_ours,) = torch.autograd.grad(out.loss, (tok,))
    torch.testing.assert_close(g_ours, g_theirs, rtol=0, atol=TOL)


def test_reference_free_hinge_vs_cpo(trl_cpo):
    tok, inputs, lengths = _batch(11)
    s = tok.sum(1)
    theirs, _, _ = trl_cpo(_cpo_self("hinge", beta=0.1), s[:B], s[B:])
    out = hinge_loss(_ours(tok, inputs, lengths), HingeParams(beta=0.1, reference_free=True))
    torch.testing.assert_close(out.loss, theirs.mean(), rtol=0, atol=TOL)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.4])
def test_cdpo_vs_cpo_smoothed_sigmoid_on_log_ratios(trl_cpo, eps):
    tok, inputs, lengths = _batch(12)
    x = _ours(tok, inputs, lengths)
    rho_w, rho_l = x.logp_chosen - x.logp_ref_chosen, x.logp_rejected - x.logp_ref_rejected
    theirs, _, _ = trl_cpo(_cpo_self("sigmoid", beta=0.3, eps=eps), rho_w, rho_l)
    out = cdpo_loss(x, CDPOParams(beta=0.3, label_smoothing=eps))
    torch.testing.assert_close(out.loss, theirs.mean(), rtol=0, atol=TOL)
