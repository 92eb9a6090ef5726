"""RewardWorker: a Ray actor hosting one reward model or an ensemble of them (HF sequence classifiers), scoring
(prompt, completion) texts in micro-batches. Each member reads the text with its own tokenizer, so members (and
the policy) need not share one."""

from __future__ import annotations

import os

import ray
import torch

from alignrl.actors.handle import ActorHandle
from alignrl.errors import UserError


class RewardWorker:
    """Scores of every member on the same texts: (K, B) float32."""

    def __init__(self, model_dirs: list[str], max_length: int, micro_batch_size: int) -> None:
        threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
        if threads > 0:
            torch.set_num_threads(threads)
        from transformers import AutoModelForSequenceClassification

        from alignrl.models.loading import load_tokenizer

        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.members = []
        for d in model_dirs:
            model = AutoModelForSequenceClassification.from_pretrained(d, dtype=torch.float32, use_safetensors=True)
            model = model.to(self.device).eval()
            if model.config.num_labels != 1:
                raise UserError(f"reward model {d}: has {model.config.num_labels} labels, a reward model has 1")
            self.members.append((d, model, load_tokenizer(d)))
        self.max_length = max_length
        self.micro_batch_size = micro_batch_size

    @torch.no_grad()
    def score(self, prompts: list[str], completions: list[str]) -> torch.Tensor:
        from alignrl.data.collate import collate_sft, tokenize_scored

        out = []
        for d, model, tokenizer in self.members:
            try:
                rows = [tokenize_scored(tokenizer, p, c, self.max_length) for p, c in zip(prompts, completions)]
            except ValueError as err:
                raise UserError(f"reward model {d}: {err}; raise rewards[].max_length") from None
            scores = []
            for start in range(0, len(rows), self.micro_batch_size):
                batch = collate_sft(rows[start:start + self.micro_batch_size], tokenizer.pad_token_id).to(self.device)
                scores.append(model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, 0]
                              .float().cpu())
            out.append(torch.cat(scores))
        return torch.stack(out)


class RewardModels(ActorHandle):
    """A handle on one RewardWorker actor with errors that name the reward term."""

    kind = "reward worker"
    hint = "Lower rewards[].cpus or the rollout/learner cpus_per_worker, or add nodes"

    def __init__(self, name: str, model_dirs: list[str], *, max_length: int, micro_batch_size: int, cpus: float,
                 gpus: float = 0.0) -> None:
        super().__init__(name, RewardWorker, (model_dirs, max_length, micro_batch_size), cpus=cpus, gpus=gpus)

    def score_async(self, prompts: list[str], completions: list[str]) -> ray.ObjectRef:
        return self.actor.score.remote(prompts, completions)

