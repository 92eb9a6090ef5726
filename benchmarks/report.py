"""Write ``benchmarks/results/REPORT.md`` and its PNGs from the sections' JSON: ``python -m benchmarks.report``.

One table per comparison (peer, settings, our figure, the peer's, the ratio, goal, peak RSS where measured),
each with the machine and date of the run that produced it, the peer's settings that differ from ours and,
where a goal is missed, what bounds it. ``make bench`` calls it after the sections; it reads whatever JSON is
there, so a section that was not run shows as such rather than with stale or invented numbers.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS

# goal: the speed-up over the peer we aim for (peer time / our time, higher is better)
GOALS = {"rl": 2.0, "dpo": 1.5, "generation": 2.0}  # sync: its own goal, sync time ≤ 2 × memcpy
CORE = ("rl", "dpo", "sft_step", "losses", "generation", "sync")
OURS_ONLY = ("stream", "packing", "memory")  # no peer of their own: after the comparisons, and never "not run"
EVIDENCE = ("kdrl", "warp", "overoptimization")


def load_results(results_dir: Path) -> dict[str, dict[str, Any]]:
    """Every ``<section>.json`` of the results folder that holds a full (non-quick) run."""
    out = {}
    for name in (*CORE, *OURS_ONLY, *EVIDENCE):
        path = results_dir / f"{name}.json"
        if path.is_file():
            data = json.loads(path.read_text())
            if not data.get("quick"):
                out[name] = data
    return out


def _stamp(data: dict[str, Any]) -> str:
    m = data.get("machine", {})
    versions = ", ".join(f"{k} {v}" for k, v in data.get("versions", {}).items())
    return (f"_Run {m.get('time', '?')} on `{m.get('host', '?')}` ({m.get('cpus', '?')} CPUs, "
            f"{m.get('torch_threads', '?')} torch thread(s) per side); {versions}._")


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def _met(value: float, goal: float) -> str:
    return f"{'met' if value >= goal else 'not met'} (goal ≥ {goal:g}×)"


def rl_section(data: dict[str, Any]) -> tuple[list[str], list[tuple[str, float, float]]]:
    """GRPO step vs TRL GRPOTrainer: markdown lines and (label, speed-up, goal) for the summary plot."""
    profiles = data["result"].get("profiles") or {"tiny": {"settings": data["settings"],
                                                           "by_engine": data["result"]["by_engine"]}}
    lines, bars = ["## GRPO step vs TRL `GRPOTrainer`", ""], []
    for profile, p in profiles.items():
        s = p["settings"]
        rows = []
        for r in p["by_engine"].values():
            mode = r.get("mode") or ("async" if s.get("ours_overlap") else "sync")
            speedup = 1.0 / r["ratio_ours_over_trl"]["median"]
            b = r["ours_breakdown"]
            rows.append([f"{r['rollout_engine']}, {mode}", r["ours_s_per_step"]["median"], r["trl_best"],
                         r["trl_s_per_step"]["median"], speedup, _met(speedup, GOALS["rl"]),
                         " / ".join(f"{b[f'{k}_s']['median']:.3f}" for k in ("generate", "score", "learner", "sync"))])
            bars.append((f"GRPO {profile}, {r['rollout_engine']} {mode}", speedup, GOALS["rl"]))
        lines += [
            f"### {profile}", "",
            f"{s['model']}; arithmetic verifier, {s['prompts_per_step']} prompts × G={s['group_size']}, "
            f"{s['max_new_tokens']} new tokens, k3 KL β={s['beta']}, fused AdamW lr {s['lr']}; {s['blocks']} "
            f"interleaved blocks of {s['block_steps']} steps after {s['warmup_steps']} warm-up steps. Async = "
            "`rollout.max_staleness: 1`; sync is exactly on-policy.", "",
            *_table(["ours (engine, mode)", "ours s/step", "peer", "peer s/step", "speed-up (peer/ours)", "goal",
                     "ours generate / score / learner / sync s"], rows), "",
        ]
    lines += [
        "Peer settings that differ from ours: " + "; ".join(n.removeprefix("Not identical: ") for n in
                                                            data.get("notes", []) if n.startswith("Not identical"))
        + " TRL generates with HF `generate` (its vLLM modes need a GPU or a second server process).", "",
        "What bounds it: on the tiny model a step is ~0.2 s and each part of ours is a Ray call between processes "
        "(generate, score, learn, sync: ~10-30 ms of latency each) sharing 2 cores, while TRL does all in one "
        "process; the compute itself is smaller than those latencies. " + _rl_bounds(profiles)
        + "What would move it: a GPU (vLLM's batching and CUDA-graph decoding), more cores so rollout, scorer and "
        "learner stop sharing two, and a cheaper learner step (bf16 on hardware that has it; "
        "`learner.micro_batch_tokens` where lengths vary).", "",
        _stamp(data), "",
    ]
    return lines, bars


def _rl_bounds(profiles: dict[str, Any]) -> str:
    """Per profile, which side of an async step waits for the other (from its breakdown medians)."""
    out = []
    for profile, p in profiles.items():
        for r in p["by_engine"].values():
            if r.get("mode") != "async":
                continue
            b = {k: r["ours_breakdown"][f"{k}_s"]["median"] for k in ("generate", "score", "learner", "sync")}
            rollout, learner = b["generate"] + b["score"], b["learner"] + b["sync"]
            bound = "the learner (+ sync)" if learner >= rollout else "generation + scoring"
            out.append(f"{profile}, {r['rollout_engine']} async: generation + scoring {rollout:.2f} s overlap the "
                       f"learner + sync {learner:.2f} s, so the step is bounded by {bound}.")
    return " ".join(out) + " " if out else ""


def dpo_section(data: dict[str, Any]) -> tuple[list[str], list[tuple[str, float, float]]]:
    rows, bars = [], []
    for model, r in data["results"].items():
        st = r["settings"]
        speedup = r["ratio_trl_s_over_ours_s"]["median"]
        mem = r.get("peak_memory", {})
        rows.append([model, st["batch_size"], st["max_length"], r["pairs_per_s"]["ours"], r["pairs_per_s"]["trl"],
                     speedup, _met(speedup, GOALS["dpo"]),
                     f"{mem.get('ours', float('nan')):.0f} / {mem.get('trl', float('nan')):.0f}"])
        bars.append((f"DPO {model.split(' ')[0]}", speedup, GOALS["dpo"]))
    sides = data.get("sides", {})
    lines = ["## DPO pairs/s vs TRL `DPOTrainer`", "",
             f"Ours: {sides.get('ours', '')}. Peer: {sides.get('peer', '')}.", "",
             *_table(["model", "pairs/step", "max length", "ours pairs/s", "TRL pairs/s", "speed-up", "goal",
                      "peak RSS MiB ours / TRL"], rows), "", _stamp(data), ""]
    return lines, bars


def sft_section(data: dict[str, Any]) -> tuple[list[str], list[tuple[str, float, float]]]:
    r, s = data["result"], data["settings"]
    speedup = 1.0 / r["ratio_ours_over_trl"]["median"]
    lines = ["## SFT step vs TRL `SFTTrainer`", "",
             f"{s['model']}; batch {s['batch_size']}, max length {s['max_length']}, {s['loss']}.", "",
             *_table(["ours s/step", "TRL s/step", "speed-up"],
                     [[r["ours_s_per_step"]["median"], r["trl_s_per_step"]["median"], speedup]]), "",
             "No goal is set for SFT; both sides run the same forward/backward of a tiny model, so ~1× is expected.",
             "", _stamp(data), ""]
    return lines, [("SFT tiny", speedup, 0.0)]


def stream_section(data: dict[str, Any]) -> list[str]:
    s, ratio = data["settings"], data["ratio_off_over_on"]
    early = statistics.mean(r["early_frac"] for r in data["on"])
    return ["## Streamed learner vs training after the batch (ours vs ours)", "",
            f"GRPO, tiny model (h{s['hidden']}, {s['layers']} layers), {s['prompts_per_step']} prompts x G="
            f"{s['group_size']}, {s['rollout_workers']} HF rollout workers, micro-batches of {s['micro_batch_size']} "
            f"rows, {s['pairs']} fresh run pairs alternating off/on.", "",
            *_table(["after the batch s/step", "streamed s/step", "off / on", "range", "micro-batches sent early"],
                    [[data["off_s_per_step"]["median"], data["on_s_per_step"]["median"], ratio["median"],
                      f"{ratio['min']:.2f}-{ratio['max']:.2f}", early]]), "",
            *[f"- {n}" for n in data["notes"]], "", _stamp(data), ""]


def packing_section(data: dict[str, Any]) -> list[str]:
    lines = ["## Learner batching: padded micro-batches vs token budget vs sequence packing (ours vs ours)", ""]
    for name, r in data["results"].items():
        s = r["settings"]
        lines += [f"### {name}", "",
                  f"One SFT learner step (DeepSpeed, ZeRO 0, fp32) on {s['rows']} sequences of {s['min_length']}-"
                  f"{s['max_length']} tokens (log-uniform; {r['real_tokens']} real tokens in a padded area of "
                  f"{r['padded_area']}), padded micro-batches of {s['micro_batch_size']} rows, token budget "
                  f"{r['budget_tokens']}; {s['rounds']} interleaved rounds of {s['block_steps']} step(s).", "",
                  *_table(["mode", "s/step", "speed-up over padded", "range", "pad_frac", "micro-batches"],
                          [[m, t["median"], r["speedup_over_padded"][m]["median"] if m != "padded" else 1.0,
                            (f"{r['speedup_over_padded'][m]['min']:.2f}-{r['speedup_over_padded'][m]['max']:.2f}"
                             if m != "padded" else ""),
                            r["step_metrics"][m]["pad_frac"], r["step_metrics"][m]["micro_batches"]]
                           for m, t in r["s_per_step"].items()]), ""]
    return lines + [*[f"- {n}" for n in data["notes"]],
                    "- What it means: both knobs remove most of the padding a row-count micro-batch computes. On CPU "
                    "packing matches the token budget on a small vocabulary and trails it slightly on SmolLM2's 49k: "
                    "with SDPA each packed row still computes a dense W × W attention, and the logits go back to the "
                    "padded layout by a copy of B·T × V values. Packing's place is where micro-batches must keep "
                    "their rows (it takes exactly the padded step; the budget regroups rows by length, which changes "
                    "how a token-mean loss weighs them) and, on a GPU, flash-attn's varlen kernels through the "
                    "same position ids (unchecked here: no GPU).", "", _stamp(data), ""]


def memory_section(data: dict[str, Any]) -> list[str]:
    rows = [[case, r["ours"]["peak_pss_mib"], r[r["peer"]]["peak_pss_mib"],
             r["ours"]["peak_pss_mib"] / r[r["peer"]]["peak_pss_mib"], "TRL" if r["peer"] == "trl" else "HF generate"]
            for case, r in data["results"].items()]
    return ["## Peak memory of the GRPO and rollout comparisons", "",
            *_table(["case", "ours peak PSS MiB", "peer peak PSS MiB", "ours / peer", "peer"], rows), "",
            *[f"- {n}" for n in data["notes"]],
            "- What ours is made of, and what would shrink it: the Ray runtime (raylet, GCS, dashboard agent) and one "
            "Python with torch and transformers per actor (learner, rollout worker, scorer), where the peer is one "
            "process; the scorer's own copy of the reference model (TRL's LoRA run disables the adapters instead); "
            "vLLM's KV cache (0.5 GiB here) and, with LoRA, the rollout worker's copy of the base layers it merges "
            "adapters into. Colocating the scorer with the learner (the reference as a hosted anchor) and a smaller "
            "kv_cache_gib are the knobs; across GPUs and nodes the per-process overhead is what buys the placement.",
            "", _stamp(data), ""]


def losses_section(data: dict[str, Any]) -> tuple[list[str], list[tuple[str, float, float]]]:
    rows = []
    for p in data["pairs"]:
        mem = p.get("peak_memory") or {}
        units = (f"{mem['ours']['units']:.1f} / {mem['trl']['units']:.1f}" if "ours" in mem else "-")
        rows.append([p["name"], p["level"], p["peer"], p["ours_s"]["median"], p["trl_s"]["median"],
                     1.0 / p["ratio_ours_over_trl"]["median"], units])
    sizes = data["sizes"]
    lines = ["## Loss functions vs TRL's", "",
             f"Logit-level losses at B={sizes['logits']['B']}, T={sizes['logits']['T']}, V={sizes['logits']['V']} "
             f"({sizes['logits']['note']}); sequence-level at B={sizes['sequence']['B']}, T={sizes['sequence']['T']}. "
             "Forward + backward; the losses agree to float rounding (see losses.json `agreement`).", "",
             *_table(["loss", "level", "peer", "ours s", "TRL s", "speed-up", "peak memory units ours / TRL"], rows),
             "", _stamp(data), ""]
    return lines, []


def generation_section(data: dict[str, Any], png: Path | None) -> tuple[list[str], list[tuple[str, float, float]]]:
    rows, bars = [], []
    for r in data["results"]:
        batch = r.get("batch", data["settings"]["batch"])
        ratio = r["ratio_vllm_over_hf"]["median"]  # the goal is on tokens/s (sampled lengths differ per side)
        goal = _met(ratio, GOALS["generation"]) if r["model"] != "tiny" and batch >= 32 else "-"
        rows.append([r["model"], r["mode"], batch, r["vllm_tok_s"]["median"], r["hf_tok_s"]["median"],
                     ratio, r["call_time_ratio_hf_over_vllm"]["median"], goal])
        if r["model"] != "tiny" and r["mode"] == "sample":
            bars.append((f"rollout SmolLM2 b{batch}", ratio, GOALS["generation"] if batch >= 32 else 0.0))
    s = data["settings"]
    lines = ["## Rollout tokens/s vs HF `generate`", "",
             f"{s['max_new_tokens']} new tokens, {s['dtype']}, temperature {s['temperature_sample']} (or greedy), "
             f"top-p {s['top_p']}, top-k {s['top_k']}; vLLM {s['vllm_mode']}. Ours: {data['sides']['ours']}. Peer: "
             f"{data['sides']['peer']}.", "",
             *_table(["model", "mode", "batch", "vLLM tok/s", "HF tok/s", "tok/s ratio", "call-time ratio HF/vLLM",
                      "goal (batch ≥ 32)"], rows), ""]
    if png is not None and _plot_generation(data, png):
        lines += [f"![rollout throughput by batch]({png.name})", ""]
    lines += ["What bounds it: one CPU thread per side; at large batches both sides are bound by the same fp32 "
              "matmuls of a 135M model, and vLLM's advantage (paged KV, no padding, continuous batching) is its "
              "saving of padded rows and per-step Python overhead, not faster kernels. On a GPU the gap widens.",
              "", _stamp(data), ""]
    return lines, bars


def _plot_generation(data: dict[str, Any], png: Path) -> bool:
    rows = sorted((r.get("batch", data["settings"]["batch"]), r) for r in data["results"]
                  if r["model"] != "tiny" and r["mode"] == "sample")
    if len(rows) < 2:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    batches = [b for b, _ in rows]
    ax.plot(batches, [r["vllm_tok_s"]["median"] for _, r in rows], "o-", label="alignrl (vLLM engine)")
    ax.plot(batches, [r["hf_tok_s"]["median"] for _, r in rows], "s--", label="HF generate")
    ax.set(xscale="log", xlabel="batch (prompts)", ylabel="useful tokens/s", title="SmolLM2-135M rollout, fp32, CPU")
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return True


def sync_section(data: dict[str, Any], png: Path | None) -> tuple[list[str], list[tuple[str, float, float]]]:
    rows = []
    for name, r in data["results"].items():
        ratio = r["ratio_sync_over_memcpy"]["median"]
        sent = r.get("sent_mb", r["bytes"] / 2**20)
        rows.append([name, f"{r['params'] / 1e6:.1f}M", f"{r['bytes'] / 2**20:.0f}", f"{sent:.1f}",
                     r["sync_s"]["median"], r["memcpy_s"]["median"], ratio,
                     f"{'met' if ratio <= 2 else 'not met'} (goal ≤ 2×)"])
    s = data["settings"]
    lines = ["## Weight sync vs the memcpy ceiling", "",
             f"Learner (DeepSpeed ZeRO 0) → one {s['engine']} rollout worker through Ray's object store, whole-layer "
             f"buckets of {s['bucket_mb']:g} MiB; ceiling: `copy_` of the same bytes in one process. LoRA rows send "
             "only the adapters; the worker merges them into its base copy.", "",
             *_table(["model", "params", "MiB", "MiB sent", "sync s", "memcpy s", "sync/memcpy", "goal"], rows), ""]
    if png is not None and _plot_sync(data, png):
        lines += [f"![weight sync time by model size]({png.name})", ""]
    lines += ["What bounds it: a full sync is one copy into the object store, the worker's fetch of it, and vLLM's "
              "`reload_weights` (a copy into its parameters plus re-processing); on SmolLM2 the fetch into the vLLM "
              "worker and the reload dominate, so ~3 copies plus per-call latency against memcpy's one. What moves "
              "it: send less (LoRA adapters, above), or a CUDA IPC / NCCL broadcast on GPU instead of Ray's store.",
              "", _stamp(data), ""]
    return lines, []


def _plot_sync(data: dict[str, Any], png: Path) -> bool:
    full = [(r["params"], r) for r in data["results"].values() if not r.get("lora")]
    if len(full) < 2:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    full.sort(key=lambda pr: pr[0])
    fig, ax = plt.subplots(figsize=(6, 4))
    params = [p / 1e6 for p, _ in full]
    ax.plot(params, [r["sync_s"]["median"] for _, r in full], "o-", label="full sync")
    ax.plot(params, [r["memcpy_s"]["median"] for _, r in full], "k:", label="memcpy (ceiling)")
    ax.plot(params, [2 * r["memcpy_s"]["median"] for _, r in full], "g--", label="goal: 2 × memcpy")
    for name, r in data["results"].items():
        if r.get("lora"):
            ax.plot([r["params"] / 1e6], [r["sync_s"]["median"]], "r*", markersize=12, label=f"{name} (adapters)")
    ax.set(xscale="log", yscale="log", xlabel="parameters (M)", ylabel="seconds", title="weight sync, CPU")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return True


def _plot_summary(bars: list[tuple[str, float, float]], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.4 * len(bars) + 1.2))
    y = list(range(len(bars)))
    ax.barh(y, [b for _, b, _ in bars], color=["tab:green" if g and b >= g else "tab:gray" if not g else "tab:red"
                                               for _, b, g in bars])
    for i, (_, _, goal) in enumerate(bars):
        if goal:
            ax.plot([goal, goal], [i - 0.4, i + 0.4], "k-", linewidth=2)
    ax.axvline(1.0, color="k", linestyle=":", linewidth=1)
    ax.set_yticks(y, [label for label, _, _ in bars])
    ax.set(xlabel="speed-up over the peer (peer time / ours); black tick: goal", title="alignrl vs peers, CPU")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def evidence_lines(name: str, data: dict[str, Any], results_dir: Path) -> list[str]:
    titles = {"kdrl": "KDRL vs distillation-only and RL-only", "warp": "WARP reward-KL front",
              "overoptimization": "Reward over-optimisation: ensembles vs one reward model"}
    lines = [f"## {titles[name]} (evidence)", "", f"Section wall time {data.get('section_wall_s', 0) / 60:.0f} min; "
             f"figures and numbers in `{name}.json`."]
    for png in sorted(results_dir.glob(f"{'kdrl_learning_curves' if name == 'kdrl' else name}*.png")):
        if "quick" not in png.name:
            lines += ["", f"![{name}]({png.name})"]
    return lines + ["", _stamp(data), ""]


# the heading each section's text starts with: a section without a fresh JSON keeps its previous text
HEADINGS = {"rl": "## GRPO step vs TRL", "dpo": "## DPO pairs/s", "sft_step": "## SFT step", "losses": "## Loss functions",
            "generation": "## Rollout tokens/s", "sync": "## Weight sync", "stream": "## Streamed learner", "packing": "## Learner batching",
            "memory": "## Peak memory", "kdrl": "## KDRL", "warp": "## WARP", "overoptimization": "## Reward over-opt"}
BARRED = ("rl", "dpo", "sft_step", "generation", "sync")  # the sections with bars in summary.png


def previous_report(path: Path) -> tuple[list[str], dict[str, list[str]]]:
    """An existing report's summary lines (its figure and goal count) and its sections' lines by section name."""
    if not path.is_file():
        return [], {}
    summary, sections, name = [], {}, None
    for line in path.read_text().splitlines():
        if line.startswith("## "):
            name = next((k for k, h in HEADINGS.items() if line.startswith(h)), None)
        if name is not None:
            sections.setdefault(name, []).append(line)
        elif line.startswith(("![speed-ups", "Goals met")):
            summary += [line, ""]
    return summary, sections


def write_report(results_dir: Path = RESULTS, out: Path | None = None) -> Path:
    """Write the report (and its PNGs next to it) from the JSON in ``results_dir``; returns its path. A section with
    no JSON in ``results_dir`` keeps its text (and its date stamp) from the report already at ``out``."""
    out = out or results_dir / "REPORT.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    data = load_results(results_dir)
    old_summary, old_sections = previous_report(out)
    body: list[str] = []
    bars: list[tuple[str, float, float]] = []
    builders = {"rl": rl_section, "dpo": dpo_section, "sft_step": sft_section, "losses": losses_section,
                "generation": lambda d: generation_section(d, out.parent / "generation_by_batch.png"),
                "sync": lambda d: sync_section(d, out.parent / "sync_by_size.png"),
                "stream": lambda d: (stream_section(d), []),  # ours against ours: no peer, no bar
                "packing": lambda d: (packing_section(d), []),
                "memory": lambda d: (memory_section(d), [])}
    missing, kept = [], []
    for name in (*CORE, *OURS_ONLY, *EVIDENCE):
        if name in data:
            lines, new_bars = builders[name](data[name]) if name in builders else (
                evidence_lines(name, data[name], results_dir), [])
            body += lines
            bars += new_bars
        elif name in old_sections:
            body += old_sections[name]
            kept.append(name)
        elif name in CORE:
            missing.append(name)
    head = ["# alignrl benchmark report", "",
            "Written by `python -m benchmarks.report` (run by `make bench`) from `benchmarks/results/*.json`. Every "
            "comparison ran both sides in one session, interleaved, several rounds; medians are shown. Speed-up = "
            "the peer's time / ours (higher is better). Peak memory: DPO and the losses measure each side in a "
            "process of its own; the GRPO and rollout comparisons share one process between the sides, so the "
            "`memory` section measures each of their sides alone in a fresh process (PSS summed over its process "
            "tree). The sync comparison's peer is a memcpy inside our own process.", ""]
    if bars and not any(name in kept for name in BARRED):
        _plot_summary(bars, out.parent / "summary.png")
        met = [b for b in bars if b[2]]
        head += ["![speed-ups over peers](summary.png)", "",
                 f"Goals met: {sum(b >= g for _, b, g in met)} of {len(met)}; median speed-up over all comparisons "
                 f"{statistics.median(b for _, b, _ in bars):.2f}×.", ""]
    elif old_summary:
        head += old_summary
    if kept:
        head += [f"Kept from the previous report (no JSON in this run; each keeps its own date stamp): "
                 f"{', '.join(kept)}.", ""]
    if missing:
        head += [f"Sections not run (no full-run JSON): {', '.join(missing)}. Run `make bench`.", ""]
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text("\n".join(head + body).rstrip() + "\n")
    tmp.replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of the sections' JSON")
    parser.add_argument("--out", type=Path, help="report path (default: <results>/REPORT.md)")
    args = parser.parse_args(argv)
    print(f"wrote {write_report(args.results, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
