"""Our ``jsd`` / ``gkd`` losses against TRL 1.16 ``GKDTrainer.generalized_jsd_loss`` on identical inputs.

``trl.experimental.gkd.GKDTrainer.generalized_jsd_loss`` is a ``@staticmethod`` (checked below), so it is
called directly with (B, T, V) float64 student and teacher logits, ``labels`` = −100 off the mask,
β ∈ {0, 0.1, 0.5, 0.9, 1} and τ ∈ {1, 0.7, 2}; losses and gradients w.r.t. the student logits are compared.

| TRL 1.16 reduction                 | ours                                               | max abs diff: loss / grad |
|------------------------------------|----------------------------------------------------|---------------------------|
| batchmean, labels                  | token_mean                                         | 1.8e-15 / 9.1e-18         |
| sum, labels                        | global_token_mean, global_denominator = 1          | 2.8e-14 / 6.9e-17         |
| num_items_in_batch = 37, labels    | global_token_mean, global_denominator = 37         | 8.9e-16 / 2.7e-18         |
| batchmean, no labels (÷ B)         | seq_mean_token_sum, mask all True                  | 7.1e-15 / 2.3e-17         |
| mean, labels (÷ tokens·V)          | token_mean / V                                     | 1.1e-16 / 6.2e-19         |
| none, labels ((N, V), summed on V) | per-token ℓ at the mask (kd.jsd_per_token)         | 2.2e-16 / —               |
| batchmean (gkd, β ∈ {0, ½, 1})     | gkd, token_mean                                    | 8.9e-16 / 5.2e-18         |
(max over the 15 (β, τ) pairs at the seeds below, float64, B = 4, T = 6, V = 11, logits ~ 3·N(0, 1); the
loss values range from 0.01 to 103, so the asserts are relative: rtol 1e-14, atol 1e-15 on losses and
1e-16 on gradients; the "none" row is per token at τ = 0.7.)

Disagreements found, and whose they are:
- None in the formulas: same M = β·p_T + (1−β)·q_θ, same endpoints (β = 0: KL(p_T‖q_θ); β = 1:
  KL(q_θ‖p_T)), same temperature (both logits ÷ τ, no τ² factor); differences are summation order only.
- TRL's ``reduction="mean"`` is F.kl_div's element mean: it also divides by the vocabulary size V, so the
  value depends on V. Its trainer never uses it (it calls ``batchmean`` or passes num_items_in_batch);
  a TRL quirk rather than a bug here; no alignrl mode reproduces it except through the ÷ V above.
- ``GKDTrainer.compute_loss`` does not pass ``temperature`` to ``generalized_jsd_loss``: in TRL's trainer
  GKDConfig.temperature is the sampling temperature and the loss is at τ = 1. Ours is the loss's own τ
  (default 1); documented in objectives/gkd.py. Not a bug on either side.
- NaN logits at masked positions: TRL's loss stays finite (``jsd[mask]``) but its gradient there is NaN
  (log_softmax backward of a NaN row), which would reach the parameters; ours is exactly 0 there
  (test_kd_base). A robustness difference, not a formula disagreement.
Not compared: TRL's seq_kd / λ sampling (loop-side, no loss counterpart); GOLD's cross-tokenizer losses.
"""

import warnings

import pytest
import torch

from alignrl.objectives.distill_base import DistillInputs
from alignrl.objectives.gkd import GKDParams, gkd_loss
from alignrl.objectives.kd import JSDLossParams, jsd_loss, jsd_per_token

F64 = torch.float64
B, T, V = 4, 6, 11
BETAS = [0.0, 0.1, 0.5, 0.9, 1.0]
TAUS = [1.0, 0.7, 2.0]


@pytest.fixture(scope="module")
def trl_jsd():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TRLExperimentalWarning on import
        mod = pytest.importorskip("trl.experimental.gkd.gkd_trainer")
    assert isinstance(mod.GKDTrainer.__dict__["generalized_jsd_loss"], staticmethod)
    return mod.GKDTrainer.generalized_jsd_loss


def inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    zs = 3 * torch.randn(B, T, V, generator=g, dtype=F64)
    zt = 3 * torch.randn(B, T, V, generator=g, dtype=F64)
    mask = torch.rand(B, T, generator=g) > 0.3
    return zs, zt, mask, torch.where(mask, 1, -100)


# (TRL kwargs, our loss_agg, our global_denominator, use an all-True mask, divide ours by V)
REDUCTIONS = {
    "batchmean": (dict(reduction="batchmean"), "token_mean", None, False, False),
    "sum": (dict(reduction="sum"), "global_token_mean", 1.0, False, False),
    "num_items_in_batch": (dict(num_items_in_batch=37), "global_token_mean", 37.0, False, False),
    "batchmean_no_labels": (dict(reduction="batchmean"), "seq_mean_token_sum", None, True, False),
    "mean": (dict(reduction="mean"), "token_mean", None, False, True),
}


def compare(trl_jsd, loss_fn, params_cls, reduction, beta, tau, seed=0):
    zs, zt, mask, labels = inputs(seed)
    trl_kw, agg, denom, all_true, per_vocab = REDUCTIONS[reduction]
    a = zs.clone().requires_grad_()
    theirs = trl_jsd(a, zt, labels=None if all_true else labels, beta=beta, temperature=tau, **trl_kw)
    theirs.backward()
    b = zs.clone().requires_grad_()
    m = torch.ones_like(mask) if all_true else mask
    ours = loss_fn(DistillInputs(logits=b, logits_teacher=zt, mask=m, global_denominator=denom),
                   params_cls(beta=beta, temperature=tau, loss_agg=agg)).loss
    ours = ours / V if per_vocab else ours
    ours.backward()
    return theirs, ours, a.grad, b.grad


@pytest.mark.parametrize("reduction", list(REDUCTIONS))
@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("tau", TAUS)
def test_jsd_matches_trl(trl_jsd, reduction, beta, tau):
    theirs, ours, g_theirs, g_ours = compare(trl_jsd, jsd_loss, JSDLossParams, reduction, beta, tau)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-14, abs=1e-15)
    torch.testing.assert_close(g_ours, g_theirs, rtol=1e-14, atol=1e-16)


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_gkd_matches_trl(trl_jsd, beta):
    theirs, ours, g_theirs, g_ours = compare(trl_jsd, gkd_loss, GKDParams, "batchmean", beta, 0.7, seed=1)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-14, abs=1e-15)
    torch.testing.assert_close(g_ours, g_theirs, rtol=1e-14, atol=1e-16)


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_per_token_values_match_trl_reduction_none(trl_jsd, beta):
    zs, zt, mask, labels = inputs(2)
    theirs = trl_jsd(zs, zt, labels=labels, beta=beta, temperature=0.7, reduction="none")  # (N, V) elementwise
    ours = jsd_per_token(DistillInputs(logits=zs, logits_teacher=zt, mask=mask), JSDLossParams(temperature=0.7), beta)
    torch.testing.assert_close(ours[mask], theirs.sum(-1), rtol=1e-14, atol=1e-15)


def test_all_masked_gives_zero_in_both(trl_jsd):
    zs, zt, mask, _ = inputs(3)
    theirs = trl_jsd(zs, zt, labels=torch.full((B, T), -100), beta=0.5)
    ours = jsd_loss(DistillInputs(logits=zs, logits_teacher=zt, mask=torch.zeros_like(mask)), JSDLossParams())
    assert theirs.item() == ours.loss.item() == 0.0
