"""Our policy losses, TIS weights and entropy against TRL 1.16, on identical random inputs.

The loss side calls TRL's real ``GRPOTrainer._compute_loss`` as an unbound function with a stand-in
``self`` (config attributes, an identity accelerator, and a ``_get_per_token_logps_and_entropies`` that
returns our ``logp`` leaf), so TRL's own per-token surrogate, k3 KL term, two-sided ``delta`` clip,
sequence-level ratio, vLLM IS-ratio multiply and the grpo/bnpo/dr_grpo/dapo normalisers all run
unmodified. Loss values and gradients w.r.t. ``logp`` are compared.
TRL computes the vLLM IS ratio inside ``_generate_and_score_completions`` (not callable alone): those
lines are replayed verbatim after checking that they are still in the installed source.
KL term: TRL adds β·k3 per token before normalising; our policy losses leave the anchor to the driver,
so the reference side here is ppo_loss + β·aggregate(k3) with k3 = exp(ref − logp) − (ref − logp) − 1
(the divergences package owns that estimator; aggregation is linear, so the sum is exact).
Observed max abs differences (float64, loss / gradient): grpo, bnpo, dr_grpo, dapo (β = 0): 0 / 0;
with β·k3: grpo 6.9e-18 / 4.3e-19, dr_grpo 3.5e-18 / 0, bnpo and dapo 0 / 0; delta ↔ dual_clip 0 / 0;
sequence level ↔ gspo 5.6e-17 / 6.9e-18; vLLM IS token/sequence_truncate ↔ tis 0 / 0; entropy 0.
Not compared: TRL's RLOO loss (a PPO clip on the ratio of summed sequence log-probs, not implemented here),
cispo/sapo/vespo/luspo (not implemented here).
"""

import importlib.util
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from alignrl.objectives.entropy import token_entropy
from alignrl.objectives.gspo import GSPOParams, gspo_loss
from alignrl.objectives.ppo import PPOParams, ppo_loss
from alignrl.objectives.tis import TISParams, tis_weights
from alignrl.ops import aggregate

F64 = torch.float64
TOL = 1e-14
B, T = 8, 10


@pytest.fixture(scope="module")
def compute_loss():
    return pytest.importorskip("trl.trainer.grpo_trainer").GRPOTrainer._compute_loss


class _Accelerator:
    num_processes = 1
    sync_gradients = True

    def reduce(self, x, reduction="sum"):
        return x

    def gather(self, x):
        return x

    def gather_for_metrics(self, x):
        return x


def _inputs(seed, scale=0.3):
    g = torch.Generator().manual_seed(seed)
    logp_old = -torch.rand(B, T, generator=g, dtype=F64) * 3
    logp = (logp_old + torch.randn(B, T, generator=g, dtype=F64) * scale).requires_grad_()
    logp_ref = logp_old + torch.randn(B, T, generator=g, dtype=F64) * 0.2
    lengths = torch.randint(2, T + 1, (B,), generator=g)
    mask = torch.arange(T)[None, :] < lengths[:, None]  # right padding, as TRL's completion_mask
    adv_seq = torch.randn(B, generator=g, dtype=F64)
    return logp, logp_old, logp_ref, mask, adv_seq


def _trl(compute_loss, logp, logp_old, mask, adv_seq, *, loss_type, eps_low, eps_high, delta=None, beta=0.0,
         logp_ref=None, level="token", is_ratio=None):
    fake_self = SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *a, **k: (logp, torch.zeros_like(logp), None),
        top_entropy_quantile=1.0, off_policy_mask_threshold=None, importance_sampling_level=level,
        beta=beta, loss_type=loss_type, epsilon_low=eps_low, epsilon_high=eps_high,
        args=SimpleNamespace(use_bias_correction_kl=False, delta=delta, steps_per_generation=1),
        use_vllm=is_ratio is not None, vllm_importance_sampling_correction=is_ratio is not None,
        model=SimpleNamespace(training=True), current_gradient_accumulation_steps=1, max_completion_length=T,
        accelerator=_Accelerator(), _entropy_bonus_enabled=False, aux_loss_enabled=False,
        _metrics=defaultdict(lambda: defaultdict(list)),
    )
    inputs = {
        "prompt_ids": torch.zeros(B, 1, dtype=torch.long), "prompt_mask": torch.ones(B, 1, dtype=torch.long),
        "completion_ids": torch.zeros(B, T, dtype=torch.long), "completion_mask": mask.to(F64),
        "advantages": adv_seq, "old_per_token_logps": logp_old, "num_items_in_batch": mask.sum().to(F64),
    }
    if logp_ref is not None:
        inputs["ref_per_token_logps"] = logp_ref
    if is_ratio is not None:
        inputs["importance_sampling_ratio"] = is_ratio
    return compute_loss(fake_self, None, inputs)


def _assert_same_as_trl(ours, theirs, logp):
    (g_ours,) = torch.autograd.grad(ours, logp)
    (g_theirs,) = torch.autograd.grad(theirs, logp)
    d_loss, d_grad = (ours - theirs).abs().item(), (g_ours - g_theirs).abs().max().item()
    assert d_loss <= TOL and d_grad <= TOL, (d_loss, d_grad)


# TRL loss_type -> (our loss_agg, global_denominator given the mask)
AGG = {
    "grpo": ("seq_mean_token_mean", None),
    "bnpo": ("token_mean", None),
    "dr_grpo": ("global_token_mean", lambda m: B * T),  # Σ ℓ / (B · max_completion_length)
    "dapo": ("global_token_mean", lambda m: m.sum()),  # Σ ℓ / num_items_in_batch (one process, no accumulation)
}


@pytest.mark.parametrize("loss_type", list(AGG))
@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_ppo_matches_trl_loss_types_with_k3_kl(compute_loss, loss_type, beta):
    logp, logp_old, logp_ref, mask, adv_seq = _inputs(0)
    agg, denom = AGG[loss_type]
    gd = denom(mask) if denom else None
    p = PPOParams(clip_low=0.2, clip_high=0.28, loss_agg=agg)
    adv = adv_seq[:, None] * mask
    ours = ppo_loss(logp, logp_old, adv, mask, p, global_denominator=gd).loss
    if beta:
        k3 = torch.exp(logp_ref - logp) - (logp_ref - logp) - 1
        ours = ours + beta * aggregate(k3, mask, agg, gd)
    theirs = _trl(compute_loss, logp, logp_old, mask, adv_seq, loss_type=loss_type, eps_low=0.2, eps_high=0.28,
                  beta=beta, logp_ref=logp_ref if beta else None)
    _assert_same_as_trl(ours, theirs, logp)


def test_dual_clip_matches_trl_delta(compute_loss):
    logp, logp_old, _, mask, adv_seq = _inputs(1, scale=1.0)  # wide ratios: some exceed δ
    assert ((logp - logp_old).exp() > 2.0)[mask].any()
    ours = ppo_loss(logp, logp_old, adv_seq[:, None] * mask, mask, PPOParams(dual_clip=2.0, loss_agg="token_mean")).loss
    theirs = _trl(compute_loss, logp, logp_old, mask, adv_seq, loss_type="bnpo", eps_low=0.2, eps_high=0.2, delta=2.0)
    _assert_same_as_trl(ours, theirs, logp)


def test_gspo_matches_trl_sequence_level(compute_loss):
    logp, logp_old, _, mask, adv_seq = _inputs(2, scale=0.01)
    p = GSPOParams(clip_low=3e-3, clip_high=4e-3)  # some sequences clipped, some not
    ours = gspo_loss(logp, logp_old, adv_seq[:, None] * mask, mask, p).loss
    theirs = _trl(compute_loss, logp, logp_old, mask, adv_seq, loss_type="grpo", eps_low=3e-3, eps_high=4e-3,
                  level="sequence")
    _assert_same_as_trl(ours, theirs, logp)


def _trl_is_ratio(old_per_token_logps, sampling_per_token_logps, completion_mask, mode, clip_max):
    # GRPOTrainer._generate_and_score_completions, vLLM importance sampling correction, *_truncate modes
    per_token_logps_diff = (old_per_token_logps - sampling_per_token_logps) * completion_mask
    per_token_logps_diff = torch.nan_to_num(per_token_logps_diff, nan=0.0)
    if mode == "sequence_truncate":
        logps_diff = per_token_logps_diff.sum(dim=-1, keepdim=True)
    else:
        logps_diff = per_token_logps_diff
    return torch.clamp(torch.exp(logps_diff), min=None, max=clip_max)


@pytest.mark.parametrize("mode", ["token_truncate", "sequence_truncate"])
def test_tis_matches_trl_vllm_importance_sampling(compute_loss, mode):
    source = " ".join(
        (Path(importlib.util.find_spec("trl").origin).parent / "trainer" / "grpo_trainer.py").read_text().split())
    for line in [
        "per_token_logps_diff = (old_per_token_logps - sampling_per_token_logps) * mask",
        "per_sequence_logps_diff = per_token_logps_diff.sum(dim=-1, keepdim=True)",
        "vllm_importance_sampling_ratio = torch.exp(logps_diff)",
        "per_token_loss = per_token_loss * inputs[\"importance_sampling_ratio\"]",
    ]:
        assert line in source, f"TRL no longer contains: {line}"
    logp, logp_old, _, mask, adv_seq = _inputs(3)
    g = torch.Generator().manual_seed(4)
    logp_rollout = logp_old + torch.randn(B, T, generator=g, dtype=F64) * 0.5
    is_ratio = _trl_is_ratio(logp_old, logp_rollout, mask.to(F64), mode, clip_max=2.0)
    w, _ = tis_weights(logp_old, logp_rollout, mask, TISParams(cap=2.0, level=mode.split("_")[0]))
    assert (w[mask] == 2.0).any() and (w[mask] < 2.0).any()
    assert (w - is_ratio.expand(B, T))[mask].abs().max().item() <= TOL
    ours = ppo_loss(logp, logp_old, adv_seq[:, None] * mask, mask, PPOParams(loss_agg="seq_mean_token_mean"),
                    weights=w).loss
    theirs = _trl(compute_loss, logp, logp_old, mask, adv_seq, loss_type="grpo", eps_low=0.2, eps_high=0.2,
                  is_ratio=is_ratio)
    _assert_same_as_trl(ours, theirs, logp)


def test_entropy_matches_trl_entropy_from_logits():
    entropy_from_logits = pytest.importorskip("trl.trainer.utils").entropy_from_logits
    torch.manual_seed(5)
    logits = torch.randn(4, 9, 33, dtype=F64) * 3
    diff = (token_entropy(logits, chunk_size=4) - entropy_from_logits(logits, chunk_size=5)).abs().max().item()
    assert diff <= TOL, diff
