"""Score a model on verifiable tasks: greedy accuracy, unbiased pass@k, mean completion length; best-of-n under a
proxy reward judged by a gold reward."""

from __future__ import annotations

import math
from math import comb
from typing import Callable

from alignrl.rollout.base import GenerationEngine, SamplingConfig

Verifier = Callable[[list[str], list[str]], list[float]]  # (completions, answers) -> rewards in [0, 1]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct: 1 − C(n−c, k) / C(n, k) (Chen et al. 2021, arXiv:2107.03374)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def evaluate(
    engine: GenerationEngine,
    prompts: list[str],
    answers: list[str],
    verify: Verifier,
    *,
    k: int = 4,
    temperature: float = 1.0,
    max_new_tokens: int = 16,
    seed: int = 0,
) -> dict:
    """Greedy accuracy and mean length, and (k > 0) pass@k and per-sample accuracy at ``temperature``.

    Returns {"metrics": {...}, "samples": first 8 (prompt, greedy completion, answer, correct)}.
    """
    greedy = engine.generate(prompts, SamplingConfig(n=1, temperature=0.0, max_new_tokens=max_new_tokens, seed=seed))
    greedy_text = [c[0].text for c in greedy]
    correct = verify(greedy_text, answers)
    metrics = {
        "accuracy": sum(correct) / len(correct),
        "mean_length": sum(len(c[0].token_ids) for c in greedy) / len(greedy),
        "n": float(len(prompts)),
    }
    if k > 0:
        sampled = engine.generate(
            prompts, SamplingConfig(n=k, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed)
        )
        flat = [c.text for group in sampled for c in group]
        rewards = verify(flat, [a for a in answers for _ in range(k)])
        per_prompt = [sum(1 for r in rewards[i * k : (i + 1) * k] if r >= 1.0) for i in range(len(prompts))]
        metrics[f"pass@{k}"] = sum(pass_at_k(k, c, k) for c in per_prompt) / len(prompts)
        metrics["sample_accuracy"] = sum(rewards) / len(rewards)
    samples = [
        {"prompt": p, "completion": t, "answer": a, "correct": bool(r >= 1.0)}
        for p, t, a, r in list(zip(prompts, greedy_text, answers, correct))[:8]
    ]
    return {"metrics": metrics, "samples": samples}


RewardFn = Callable[[list[str], list[str], list[str]], "object"]  # (prompts, completions, answers) -> (B,) tensor


def bon_kl(n: int) -> float:
    """KL(π_BoN ‖ π) = log n − (n − 1)/n, the analytic KL of best-of-n sampling (Stiennon et al. 2020; Gao et al.)."""
    return math.log(n) - (n - 1) / n


def best_of_n(engine: GenerationEngine, prompts: list[str], answers: list[str], proxy: RewardFn, gold: RewardFn, *,
              ns: list[int], temperature: float = 1.0, max_new_tokens: int = 16, seed: int = 0) -> dict:
    """Best-of-n under a proxy reward, judged by a gold reward, for every n in ``ns``.

    Draws max(ns) samples per prompt once; best-of-n takes the first n of them and keeps the one with the highest
    proxy score (the first on ties). Per n: the mean proxy and gold reward of the kept samples, and the analytic
    KL log n − (n−1)/n. Gao et al. (arXiv:2210.10760) and Coste et al. (arXiv:2310.02743) plot gold against √KL.
    Returns {"points": [{n, kl, proxy, gold}], "samples_per_prompt": max(ns)}.
    """
    import torch

    top = max(ns)
    sampled = engine.generate(prompts, SamplingConfig(n=top, temperature=temperature, max_new_tokens=max_new_tokens,
                                                      seed=seed))
    flat_prompts = [p for p in prompts for _ in range(top)]
    flat = [c.text for group in sampled for c in group]
    flat_answers = [a for a in answers for _ in range(top)]
    proxy_scores = torch.as_tensor(proxy(flat_prompts, flat, flat_answers), dtype=torch.float64).view(len(prompts), top)
    gold_scores = torch.as_tensor(gold(flat_prompts, flat, flat_answers), dtype=torch.float64).view(len(prompts), top)
    points = []
    for n in sorted(set(ns)):
        pick = proxy_scores[:, :n].argmax(1, keepdim=True)  # argmax returns the first maximum
        points.append({"n": n, "kl": bon_kl(n), "proxy": float(proxy_scores.gather(1, pick).mean()),
                       "gold": float(gold_scores.gather(1, pick).mean())})
    return {"points": points, "samples_per_prompt": top}
