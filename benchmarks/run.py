"""Run the benchmarks: ``python -m benchmarks.run [--quick] [--all] [--section NAME] [--out FILE]``.

Without ``--section`` the comparisons against peers (``CORE``) run, and with ``--all`` (or ``BENCH=all``) the
evidence studies too (KDRL, WARP, over-optimisation: hours on CPU), then ``benchmarks/results/REPORT.md`` is
written from every full run's JSON (``benchmarks.report``). Each section runs in its own child process (in-process vLLM and DeepSpeed
both set up ``torch.distributed``, so sections must not share a process); within a section ours
and the peer always share one process. Results go to ``benchmarks/results/<section>.json``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import RESULTS, set_threads, setup_env, write_result

SECTIONS = {"generation": "benchmarks.generation", "sft_step": "benchmarks.sft_step", "losses": "benchmarks.losses",
            "rl": "benchmarks.rl", "kdrl": "benchmarks.kdrl_vs_baselines",
            "warp": "benchmarks.warp_front", "overoptimization": "benchmarks.overoptimization",
            "dpo": "benchmarks.dpo_step", "sync": "benchmarks.weight_sync", "stream": "benchmarks.stream_step",
            "memory": "benchmarks.memory", "packing": "benchmarks.packing_step"}
CORE = ("rl", "dpo", "sync", "generation", "losses", "sft_step", "stream", "packing", "memory")
EVIDENCE = ("kdrl", "warp", "overoptimization")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and few repeats (smoke test, < 3 min)")
    parser.add_argument("--section", choices=sorted(SECTIONS), help="run only this section (in this process)")
    parser.add_argument("--all", action="store_true", default=os.environ.get("BENCH") == "all",
                        help="also the evidence studies (default when BENCH=all)")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS") or 1),
                        help="intra-op threads per side (default: $OMP_NUM_THREADS, else 1; 0: one per core)")
    parser.add_argument("--out", type=Path, help="JSON file to write (default: benchmarks/results/<section>.json; "
                        "without --section: one file holding every section)")
    return parser.parse_args(argv)


def run_section(name: str, quick: bool, out: Path | None, n_threads: int) -> Path:
    """Run one section in this process and write its JSON; returns the file written."""
    setup_env()
    set_threads(n_threads)
    start = time.perf_counter()
    data = importlib.import_module(SECTIONS[name]).run(quick=quick)
    data["section_wall_s"] = time.perf_counter() - start
    path = write_result(name, data, out)
    print(f"{name}: wrote {path} ({data['section_wall_s']:.0f} s)", flush=True)
    return path


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    setup_env()
    if args.section:
        run_section(args.section, args.quick, args.out, args.threads)
        return 0
    failed = []
    names = CORE + EVIDENCE if args.all else CORE
    for name in names:
        cmd = [sys.executable, "-m", "benchmarks.run", "--section", name, "--threads", str(args.threads)]
        cmd += ["--quick"] if args.quick else []
        if subprocess.run(cmd).returncode != 0:
            failed.append(name)
    if args.out:
        suffix = "_quick" if args.quick else ""
        combined = {n: json.loads((RESULTS / f"{n}{suffix}.json").read_text()) for n in names if n not in failed}
        args.out.write_text(json.dumps(combined, indent=2) + "\n")
    if not args.quick:
        from benchmarks.report import write_report

        print(f"report: {write_report()}", flush=True)
    if failed:
        print(f"sections that failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
