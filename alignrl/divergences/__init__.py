"""Divergences D(p‖q) between a policy p (π_θ, student) and an anchor q (π_ref, teacher, EMA, soup,
previous iterate): one registry, one entry type, three forms. Importing this package registers them
(explicit list below: the only side-effect imports).

Uniform API of every ``DIVERGENCES`` entry (``d = DIVERGENCES.get(name)``, ``P = DIVERGENCES.entry(name).params``,
``p = P(**recipe_block)``; every P subclasses ``DivergenceParams``: ``chunk_size``, ``log_ratio_clamp``):
  d.full(logits_p, logits_q, p, *, temperature=1.0) -> (B, T)
        exact per-token D from (B, T, V) logits of both models (any float dtype; fp32-or-wider result);
        chunked over positions, no (B, T, V) activation kept for backward (base.py).
  d.dense(logp, logq, p) -> (...)
        the definition, on normalized log-probs over the last dim (used by full and top-k).
  d.sampled(log_u, p) -> (f(u), f′(u)), also spelled d(log_u, p)    [d.has_sampled; f-divergences only]
        generator f and derivative at u = π/π_ref from log u = logp − logp_ref (B, T), with
        D_f(π‖π_ref) = E_{y∼π_ref}[f(u)]: the mean of f(u) is unbiased on samples from π_ref (DPH-RL's
        offline π_0 samples); on samples from π use f(u)/u (E_π[f(u)/u] = D_f). f′(u) is the f-DPO /
        f-DPG score, and d f(u)/d log u = u·f′(u).
  topk_full(d, logits_p, topk_logq, topk_index, p) -> (B, T)
        the same D when the anchor gives only its top-k log-probs: (k+1)-bucket coarse-graining (topk.py).

Registered: reverse_kl, forward_kl, jeffreys, js, generalized_jsd, alpha, tv, chi2, hellinger, tsallis, skew_kl,
skew_reverse_kl, akl (no sampled form), f_divergence (user f, f′).
Zero-probability entries (−inf logits in both models: padded vocabulary, constrained decoding) add exactly 0
with zero gradient in every full and top-k form, i.e. each equals its value on the vocabulary without them;
where only the anchor is 0 the definitions' +inf is kept (base.py docstring; each family states its case).

Sampled KL(π‖π_ref) estimators live in a second registry, ``KL_ESTIMATORS`` (uniform signature
``est(logp, logp_ref, logp_behavior, p: KLEstimatorParams) -> (B, T)``, logp_behavior None for samples
from π itself, else the estimate is importance-weighted by π/μ): kl_k1, kl_k2, kl_k3,
kl_importance_weighted. Their docstrings state which expectation and which gradient each is unbiased for.
"""

from alignrl.divergences import akl, alpha, chi2, generic, hellinger, js, kl, skew, topk, tsallis, tv  # noqa: F401
from alignrl.divergences.base import KL_ESTIMATORS, Divergence, DivergenceParams, register_divergence
from alignrl.divergences.kl import KLEstimatorParams
from alignrl.divergences.topk import topk_buckets, topk_full

__all__ = [
    "KL_ESTIMATORS", "Divergence", "DivergenceParams", "KLEstimatorParams", "register_divergence", "topk_buckets",
    "topk_full",
]
