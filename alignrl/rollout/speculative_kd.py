"""Speculative knowledge distillation (SKD) sampling: the student proposes each token, the teacher keeps
it if it is among the teacher's top-K next tokens and otherwise replaces it with a sample of its own.

Xu et al. 2024, "Speculative Knowledge Distillation: Bridging the Teacher-Student Gap Through Interleaved
Sampling" (arXiv:2410.11325): for t = 1..T,
    y_t ~ π_student(· | x, y_<t)
    if y_t ∉ top-K(π_teacher(· | x, y_<t)):  y_t ~ π_teacher(· | x, y_<t)
so early in training (poor student) the sequences look like the teacher's, later like the student's own.

This needs the teacher at every decoding step, which vLLM's sampler cannot do, so it runs as a manual
decode loop over two HF models, each with its own KV cache. Cost per generated token: one student and one
teacher forward of the batch (vs one student forward for plain sampling), and no paged batching.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SpeculativeSample:
    new_ids: torch.Tensor        # (B, T) generated ids, pad_id after a row's EOS
    student_logp: torch.Tensor   # (B, T) raw student log-prob of each kept or replaced token
    replaced: torch.Tensor       # (B, T) bool, True where the teacher replaced the student's proposal
    valid: torch.Tensor          # (B, T) bool, True up to and including a row's EOS


def sample_from_logits(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """(B,) ids from (B, V) logits: argmax at temperature 0, else temperature then nucleus (top-p) sampling."""
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        outside = sorted_probs.cumsum(-1) - sorted_probs > top_p  # keep the smallest prefix reaching top_p
        sorted_probs = sorted_probs.masked_fill(outside, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return torch.multinomial(probs, 1).squeeze(-1)


def _step(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
          cache: object | None) -> tuple[torch.Tensor, object]:
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True)
    return out.logits[:, -1].float(), out.past_key_values


@torch.inference_mode()
def speculative_kd_generate(student: torch.nn.Module, teacher: torch.nn.Module, input_ids: torch.Tensor,
                            attention_mask: torch.Tensor, *, top_k: int, max_new_tokens: int, temperature: float,
                            top_p: float, eos_ids: frozenset[int], pad_id: int) -> SpeculativeSample:
    """SKD-sample up to ``max_new_tokens`` tokens for a left-padded batch (formula in the module docstring).

    Both models see the same prefix at every step (the kept or replaced token is fed to both). Sampling
    uses torch's global RNG: seed it (the HF engine does, per call). ``top_k`` >= the vocabulary keeps
    every proposal (plain student sampling).
    """
    batch = input_ids.shape[0]
    positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # left padding: real tokens count from 0
    s_logits, s_cache = _step(student, input_ids, attention_mask, positions, None)
    t_logits, t_cache = _step(teacher, input_ids, attention_mask, positions, None)
    done = torch.zeros(batch, dtype=torch.bool, device=input_ids.device)
    eos = torch.tensor(sorted(eos_ids), dtype=torch.long, device=input_ids.device)
    ids, logps, replaced, valid = [], [], [], []
    for _ in range(max_new_tokens):
        proposal = sample_from_logits(s_logits, temperature, top_p)  # (B,)
        k = min(top_k, t_logits.shape[-1])
        in_top_k = (t_logits.topk(k, dim=-1).indices == proposal[:, None]).any(-1)
        token = torch.where(in_top_k, proposal, sample_from_logits(t_logits, temperature, top_p))
        token = torch.where(done, torch.full_like(token, pad_id), token)
        valid.append(~done)
        replaced.append(~in_top_k & ~done)
        logps.append(s_logits.log_softmax(-1).gather(-1, token[:, None]).squeeze(-1))
        ids.append(token)
        done = done | torch.isin(token, eos)
        if bool(done.all()):
            break
        attention_mask = torch.cat([attention_mask, torch.ones_like(attention_mask[:, :1])], dim=1)
        positions = positions[:, -1:] + 1
        s_logits, s_cache = _step(student, token[:, None], attention_mask, positions, s_cache)
        t_logits, t_cache = _step(teacher, token[:, None], attention_mask, positions, t_cache)
    return SpeculativeSample(new_ids=torch.stack(ids, 1), student_logp=torch.stack(logps, 1),
                             replaced=torch.stack(replaced, 1), valid=torch.stack(valid, 1))
