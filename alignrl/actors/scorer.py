"""ScorerWorker: a Ray actor holding one frozen model (the initial policy, a teacher, a soup) that returns
per-token log-probs of given sequences, for anchor terms and distillation."""

from __future__ import annotations

import os

import ray
import torch

from alignrl.actors.handle import ActorHandle
from alignrl.ops import token_logprobs
from alignrl.types import TokenBatch


class ScorerWorker:
    """log π_anchor(x_t | x_<t) for every position of a batch (0 at position 0), micro-batched, no grad."""

    def __init__(self, model_dirs: list[str], weights: list[float] | None, micro_batch_size: int) -> None:
        threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
        if threads > 0:
            torch.set_num_threads(threads)
        from alignrl.anchors.soup import SoupParams, build_soup
        from alignrl.models.loading import load_causal_lm

        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = load_causal_lm(model_dirs[0], "float32", key="anchor model").to(self.device).eval()
        if len(model_dirs) > 1:  # a soup: average the ingredients into the first model's weights
            states = [self.model.state_dict()] + [
                load_causal_lm(d, "float32", key="anchor model").state_dict() for d in model_dirs[1:]
            ]
            self.model.load_state_dict(build_soup(states, SoupParams(weights=tuple(weights) if weights else None)))
        self.micro_batch_size = micro_batch_size

    @torch.no_grad()
    def logprobs(self, batch: TokenBatch) -> torch.Tensor:
        """(B, T) float32 log-probs of ``batch.input_ids`` under the anchor model (on CPU)."""
        out = []
        for start in range(0, len(batch), self.micro_batch_size):
            micro = batch.slice(start, start + self.micro_batch_size).to(self.device)
            logits = self.model(input_ids=micro.input_ids, attention_mask=micro.attention_mask).logits
            out.append(token_logprobs(logits, micro.input_ids).float().cpu())
        return torch.cat(out)

    @torch.no_grad()
    def topk_logprobs(self, batch: TokenBatch, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The anchor's sampled-token log-probs (B, T) and its k most likely tokens at every position:
        log-probs (B, T, k) float32, normalised over the whole vocabulary, and token ids (B, T, k) long.

        Position t holds the distribution token t was drawn from (that of logits t − 1), as
        ``token_logprobs`` aligns; position 0 is 0 / token 0. k ≥ V sends the full distribution.
        """
        logp_out, top_out, idx_out = [], [], []
        for start in range(0, len(batch), self.micro_batch_size):
            micro = batch.slice(start, start + self.micro_batch_size).to(self.device)
            logits = self.model(input_ids=micro.input_ids, attention_mask=micro.attention_mask).logits
            logp_out.append(token_logprobs(logits, micro.input_ids).float().cpu())
            dist = torch.log_softmax(logits[:, :-1].float(), dim=-1)
            top, idx = dist.topk(min(k, dist.shape[-1]), dim=-1)
            top_out.append(torch.nn.functional.pad(top.cpu(), (0, 0, 1, 0), value=0.0))
            idx_out.append(torch.nn.functional.pad(idx.cpu(), (0, 0, 1, 0), value=0))
        return torch.cat(logp_out), torch.cat(top_out), torch.cat(idx_out)


class Scorer(ActorHandle):
    """A handle on one ScorerWorker actor with errors that name it."""

    kind = "scorer"
    hint = "Lower anchors[].cpus or the rollout/learner cpus_per_worker, or add nodes"

    def __init__(self, name: str, model_dirs: list[str], *, weights: list[float] | None = None,
                 micro_batch_size: int = 32, cpus: float = 1.0, gpus: float = 0.0) -> None:
        super().__init__(name, ScorerWorker, (model_dirs, weights, micro_batch_size), cpus=cpus, gpus=gpus)

    def logprobs_async(self, batch: TokenBatch) -> ray.ObjectRef:
        return self.actor.logprobs.remote(batch)

    def topk_logprobs_async(self, batch: TokenBatch, k: int) -> ray.ObjectRef:
        return self.actor.topk_logprobs.remote(batch, k)

