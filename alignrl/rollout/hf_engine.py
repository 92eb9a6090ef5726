"""Generation with transformers' ``generate``: the reference engine and the fallback without vLLM.

Implements ``GenerationEngine`` (see ``base.py``) with the same conventions as the vLLM engine, so the
two are interchangeable and their outputs can be compared token for token:

- ``temperature == 0`` is greedy decoding; otherwise temperature, then nucleus (``top_p``) sampling,
  with no top-k cut (transformers' default of top-k 50 is switched off).
- Log-probs are the raw model log-probs of the sampled tokens, ``log_softmax(logits)`` before
  temperature and top-p, which is what vLLM returns (``logprobs_mode="raw_logprobs"``).
- A completion stops at the first EOS token and includes it; ``finished`` is False when
  ``max_new_tokens`` was reached without EOS.
- Sampling is seeded with ``sampling.seed`` on a forked RNG, so a call is reproducible and leaves
  the caller's random state alone. Samples are not the same as vLLM's (different random streams).

With ``teacher_dir`` and ``skd_top_k`` the engine samples by speculative KD (``speculative_kd.py``) when a
call asks for it (``sampling.teacher_in_loop``; evaluation does not): the teacher replaces every proposed
token outside its top-K; log-probs stay the student's, and ``extra["skd_replaced"]`` counts the replaced.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch
from transformers import GenerationConfig

from alignrl.errors import UserError
from alignrl.models.loading import load_causal_lm, load_tokenizer
from alignrl.rollout.base import Completion, SamplingConfig


class HFEngine:
    """A ``GenerationEngine`` over an HF causal LM, generating ``batch_size`` sequences at a time."""

    def __init__(self, model_dir: str | os.PathLike[str], *, dtype: str = "float32",
                 device: str = "cpu", batch_size: int = 64, teacher_dir: str | os.PathLike[str] | None = None,
                 skd_top_k: int = 0) -> None:
        """Load the model folder's tokenizer (left padding) and model in ``dtype`` on ``device``; with
        ``teacher_dir`` and ``skd_top_k > 0`` also the teacher, for speculative-KD sampling."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise UserError(f"rollout batch_size {batch_size!r} must be a positive integer.")
        if (teacher_dir is None) != (skd_top_k <= 0):
            raise UserError("speculative KD needs both a teacher folder and skd_top_k > 0 (rollout.skd_top_k)")
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.tokenizer = load_tokenizer(model_dir, key="rollout model")
        self.model = load_causal_lm(model_dir, dtype, key="rollout model").to(self.device).eval()
        self.skd_top_k = skd_top_k
        self.teacher = None
        if teacher_dir is not None:
            if load_tokenizer(teacher_dir, key="speculative-KD teacher").get_vocab() != self.tokenizer.get_vocab():
                raise UserError(f"speculative-KD teacher {teacher_dir} has another tokenizer than the policy "
                                f"{model_dir}; the teacher must share the student's vocabulary")
            self.teacher = load_causal_lm(teacher_dir, dtype, key="speculative-KD teacher").to(self.device).eval()
        self.eos_ids = _eos_ids(self.model.generation_config.eos_token_id, self.tokenizer.eos_token_id)
        # A clean generation config: sampling settings saved with the model (top_k, repetition
        # penalty, ...) would otherwise leak into generate() and break parity with vLLM.
        self.model.generation_config = GenerationConfig(
            bos_token_id=self.tokenizer.bos_token_id,
            eos_token_id=sorted(self.eos_ids),
            pad_token_id=self.tokenizer.pad_token_id,
        )

    def generate(self, prompts: list[str], sampling: SamplingConfig) -> list[list[Completion]]:
        """One list of ``sampling.n`` completions per prompt, in prompt order."""
        rows = [prompt for prompt in prompts for _ in range(sampling.n)]  # (P * n,)
        flat: list[Completion] = []
        cuda = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda), torch.inference_mode():
            torch.manual_seed(sampling.seed)
            for start in range(0, len(rows), self.batch_size):
                flat += self._generate_batch(rows[start:start + self.batch_size], sampling)
        n = sampling.n
        return [flat[i * n:(i + 1) * n] for i in range(len(prompts))]

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Copy tensors with HF parameter names into the model; unknown names raise ``ValueError``.

        A subset of the parameters may be given; the others keep their values.
        """
        named = dict(named_tensors)
        unknown = sorted(named.keys() - self.model.state_dict().keys())
        if unknown:
            raise ValueError(f"load_weights: the model has no parameters named {unknown[:5]} "
                             f"({len(unknown)} unknown names)")
        self.model.load_state_dict(named, strict=False)

    def close(self) -> None:
        """Drop the model (its memory is freed once no other reference holds it)."""
        self.__dict__.pop("model", None)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _generate_batch(self, rows: list[str], sampling: SamplingConfig) -> list[Completion]:
        """Generate one completion for each row of one batch."""
        batch = self.tokenizer(rows, return_tensors="pt", padding=True).to(self.device)
        if self.teacher is not None and sampling.teacher_in_loop:
            return self._speculative_batch(batch, sampling)
        out = self.model.generate(**batch, generation_config=_generation_config(sampling))
        new_ids = out.sequences[:, batch["input_ids"].shape[1]:]  # (B, T), T <= max_new_tokens
        logp = _token_logprobs(out.logits, new_ids) if sampling.logprobs else None  # (B, T)
        return [self._completion(new_ids[i], None if logp is None else logp[i])
                for i in range(len(rows))]

    def _speculative_batch(self, batch: dict[str, torch.Tensor], sampling: SamplingConfig) -> list[Completion]:
        from alignrl.rollout.speculative_kd import speculative_kd_generate

        out = speculative_kd_generate(
            self.model, self.teacher, batch["input_ids"], batch["attention_mask"], top_k=self.skd_top_k,
            max_new_tokens=sampling.max_new_tokens, temperature=sampling.temperature, top_p=sampling.top_p,
            eos_ids=self.eos_ids, pad_id=self.tokenizer.pad_token_id,
        )
        completions = []
        for i in range(out.new_ids.shape[0]):
            c = self._completion(out.new_ids[i], out.student_logp[i] if sampling.logprobs else None)
            c.extra["skd_replaced"] = int(out.replaced[i].sum())
            completions.append(c)
        return completions

    def _completion(self, ids: torch.Tensor, logp: torch.Tensor | None) -> Completion:
        """Cut one generated row at its first EOS (kept) and wrap it with its log-probs."""
        token_ids = ids.tolist()
        end = next((i + 1 for i, t in enumerate(token_ids) if t in self.eos_ids), None)
        token_ids = token_ids[:end]  # after EOS, generate() pads: drop it
        return Completion(
            text=self.tokenizer.decode(token_ids, skip_special_tokens=True),
            token_ids=tuple(token_ids),
            logprobs=None if logp is None else tuple(logp[:len(token_ids)].tolist()),
            finished=end is not None,
        )


def _generation_config(sampling: SamplingConfig) -> GenerationConfig:
    """The transformers settings for ``sampling``: greedy at temperature 0, else plain top-p."""
    common = {
        "max_new_tokens": sampling.max_new_tokens,
        "num_beams": 1,
        "return_dict_in_generate": True,
        "output_logits": sampling.logprobs,  # raw logits, before temperature and top-p
    }
    if sampling.temperature == 0:
        return GenerationConfig(do_sample=False, **common)
    return GenerationConfig(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p,
                            top_k=0, **common)  # top_k=0 switches off transformers' default of 50


def _token_logprobs(step_logits: tuple[torch.Tensor, ...], new_ids: torch.Tensor) -> torch.Tensor:
    """(B, T) raw log-probs of ``new_ids`` from the per-step logits (T tensors of (B, V)), in fp32."""
    per_step = [
        logits.float().log_softmax(-1).gather(-1, new_ids[:, t:t + 1]).squeeze(-1)  # (B,)
        for t, logits in enumerate(step_logits)
    ]
    return torch.stack(per_step, dim=1)


def _eos_ids(*ids: int | list[int] | None) -> frozenset[int]:
    """The set of EOS ids from the model's generation config and the tokenizer (int, list or None)."""
    found: set[int] = set()
    for value in ids:
        if isinstance(value, int):
            found.add(value)
        elif value is not None:
            found.update(value)
    return frozenset(found)
