"""RewardWorker: a Ray actor hosting one reward model or an ensemble of them (HF sequence classifiers), scoring
(prompt, completion) texts in micro-batches. Each member reads the text with its own tokenizer, so members (and
the policy) need not share one."""

from __future__ import annotations

import os

import ray
import torch

from alignrl.actors.cluster import task_error_detail
from alignrl.errors import UserError

START_TIMEOUT_S = 180


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
            model = AutoModelForSequenceClassification.from_pretrained(d, dtype=torch.float32).to(self.device).eval()
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


class RewardModels:
    """A handle on one RewardWorker actor with errors that name the reward term."""

    def __init__(self, name: str, model_dirs: list[str], *, max_length: int, micro_batch_size: int, cpus: float,
                 gpus: float = 0.0) -> None:
        self.name = name
        self.actor = ray.remote(RewardWorker).options(num_cpus=cpus, num_gpus=gpus).remote(
            model_dirs, max_length, micro_batch_size)
        ready, _ = ray.wait([self.actor.__ray_ready__.remote()], timeout=START_TIMEOUT_S)
        if not ready:
            ray.kill(self.actor)
            raise UserError(f"reward worker {name!r} could not start within {START_TIMEOUT_S} s: it asks for {cpus} CPU "
                            f"and {gpus} GPU; free now: {ray.available_resources()}. Lower rewards[].cpus or the "
                            "rollout/learner cpus_per_worker, or add nodes")
        self.get(ready[0], "start")

    def get(self, ref: ray.ObjectRef, what: str):
        try:
            return ray.get(ref)
        except ray.exceptions.RayActorError as err:
            raise UserError(f"reward worker {self.name!r} died during {what}: {str(err).splitlines()[0]}; the run "
                            "stops here, checkpoints written so far are complete") from None
        except ray.exceptions.RayTaskError as err:
            cause = getattr(err, "cause", None)
            if isinstance(cause, UserError):
                raise UserError(f"reward worker {self.name!r}: {cause}") from None
            raise UserError(f"reward worker {self.name!r}: {what} failed: {task_error_detail(err)}") from None

    def score_async(self, prompts: list[str], completions: list[str]) -> ray.ObjectRef:
        return self.actor.score.remote(prompts, completions)

    def shutdown(self) -> None:
        ray.kill(self.actor)
