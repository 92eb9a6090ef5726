"""benchmarks/report: REPORT.md and its PNGs from the sections' JSON, with ratios, goals and missing sections."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.report import write_report

MACHINE = {"host": "vm", "cpus": 2, "torch_threads": 1, "time": "2026-11-26T12:00:00+0000"}


def _spread(median: float) -> dict[str, float]:
    return {"median": median, "min": median * 0.9, "max": median * 1.1, "rel_spread": 0.2, "n": 3}


def _sync_row(params: float, sync_s: float, memcpy_s: float, lora: bool = False) -> dict:
    return {"params": params, "bytes": params * 4, "sync_s": _spread(sync_s), "memcpy_s": _spread(memcpy_s),
            "ratio_sync_over_memcpy": _spread(sync_s / memcpy_s), "sent_mb": 0.5 if lora else params * 4 / 2**20,
            "lora": lora, "parts": {}, "buckets": 1}


def _gen_row(batch: int, vllm: float, hf: float) -> dict:
    return {"model": "smollm2", "mode": "sample", "batch": batch, "vllm_tok_s": _spread(vllm), "hf_tok_s": _spread(hf),
            "ratio_vllm_over_hf": _spread(vllm / hf), "call_time_ratio_hf_over_vllm": _spread(vllm / hf)}


def _write(folder: Path, name: str, data: dict) -> None:
    (folder / f"{name}.json").write_text(json.dumps({"section": name, "quick": False, "machine": MACHINE,
                                                     "versions": {"torch": "2"}, **data}))


def test_report_tables_goals_plots_and_missing_sections(tmp_path: Path):
    _write(tmp_path, "sync", {
        "settings": {"engine": "vllm", "bucket_mb": 64},
        "results": {"small": _sync_row(1e6, 0.01, 0.001), "big": _sync_row(1.35e8, 0.3, 0.2),
                    "big LoRA": _sync_row(1.35e8, 0.15, 0.2, lora=True)}})
    _write(tmp_path, "generation", {
        "settings": {"batch": 16, "max_new_tokens": 128, "dtype": "float32", "temperature_sample": 1.0, "top_p": 1.0,
                     "top_k": "off", "vllm_mode": "in-process"},
        "sides": {"ours": "VLLMEngine", "peer": "HF generate"},
        "results": [_gen_row(1, 20.0, 15.0), _gen_row(16, 140.0, 50.0), _gen_row(64, 300.0, 120.0)]})
    dpo_row = {"settings": {"batch_size": 8, "max_length": 32}, "pairs_per_s": {"ours": 5.0, "trl": 3.0},
               "ratio_trl_s_over_ours_s": _spread(1.4), "peak_memory": {"ours": 2900.0, "trl": 3300.0}}
    _write(tmp_path, "dpo", {"results": {"SmolLM2-135M": dpo_row}, "sides": {"ours": "a", "peer": "b"}})
    # a quick run never stands in for a full one
    (tmp_path / "rl.json").write_text(json.dumps({"section": "rl", "quick": True}))

    report = write_report(tmp_path)
    text = report.read_text()
    assert report == tmp_path / "REPORT.md" and not list(tmp_path.glob("*.tmp"))
    assert "Sections not run (no full-run JSON): rl, sft_step, losses." in text
    # sync: 10× and 1.5× memcpy; the LoRA row (0.75×) meets the ≤ 2× goal, the small full one does not
    sync_rows = [line for line in text.splitlines() if line.startswith(("| small", "| big"))]
    assert [r.rsplit("|", 2)[-2].strip() for r in sync_rows] == ["not met (goal ≤ 2×)", "met (goal ≤ 2×)",
                                                                 "met (goal ≤ 2×)"]
    assert "| 10 |" in sync_rows[0] and "| 0.75 |" in sync_rows[2]
    # generation: the goal applies from batch 32 (64: 2.5× met), DPO 1.4× misses 1.5×
    assert "| smollm2 | sample | 64 | 300 | 120 | 2.5 | 2.5 | met (goal ≥ 2×) |" in text
    assert "| smollm2 | sample | 1 | 20 | 15 | 1.33 | 1.33 | - |" in text
    assert "| 1.4 | not met (goal ≥ 1.5×) | 2900 / 3300 |" in text
    assert "Goals met: 1 of 2" in text  # the bars with a goal: DPO (missed) and rollout at batch 64 (met)
    for png in ("summary.png", "sync_by_size.png", "generation_by_batch.png"):
        assert (tmp_path / png).stat().st_size > 1000 and f"]({png})" in text
    assert "_Run 2026-11-26T12:00:00+0000 on `vm` (2 CPUs" in text


def test_a_section_without_json_keeps_its_previous_text_and_the_summary_stays(tmp_path: Path):
    (tmp_path / "REPORT.md").write_text(
        "# alignrl benchmark report\n\nold head\n\n![speed-ups over peers](summary.png)\n\nGoals met: 3 of 8; x.\n\n"
        "## GRPO step vs TRL `GRPOTrainer`\n\nold grpo table\n\n_Run 2026-11-20_\n\n"
        "## DPO pairs/s vs TRL `DPOTrainer`\n\nold dpo table\n")
    _write(tmp_path, "stream", {
        "settings": {"hidden": 128, "layers": 4, "prompts_per_step": 16, "group_size": 4, "rollout_workers": 2,
                     "micro_batch_size": 8, "pairs": 3},
        "off_s_per_step": _spread(0.3), "on_s_per_step": _spread(0.25), "ratio_off_over_on": _spread(1.2),
        "on": [{"early_frac": 0.25}], "notes": ["a note"]})
    text = write_report(tmp_path).read_text()
    assert "old grpo table" in text and "old dpo table" in text and "_Run 2026-11-20_" in text  # kept verbatim
    assert "Goals met: 3 of 8; x." in text  # no fresh section with bars: the old summary stands
    assert "Kept from the previous report (no JSON in this run; each keeps its own date stamp): rl, dpo." in text
    assert "Sections not run (no full-run JSON): sft_step, losses, generation, sync." in text
    assert "| 0.3 | 0.25 | 1.2 | 1.08-1.32 | 0.25 |" in text  # the fresh stream section
    assert text.index("## GRPO step") < text.index("## DPO pairs/s") < text.index("## Streamed learner")
