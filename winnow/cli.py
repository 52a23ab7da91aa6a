"""The ``winnow`` command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from winnow.errors import WinnowError

console = Console()


def _overrides(args) -> dict:
    out = {}
    if getattr(args, "input", None):
        out["input.path"] = args.input
    if getattr(args, "output", None):
        out["output.dir"] = args.output
    return out


def cmd_run(args) -> int:
    from winnow.pipeline import load_pipeline
    from winnow.runners.local import run_pipeline

    spec = load_pipeline(args.pipeline, _overrides(args))
    if args.runner == "spark":
        from winnow.spark.executor import run_spark

        ledger = run_spark(spec, master=args.master, force=args.force, progress=not args.quiet)
    else:
        ledger = run_pipeline(spec, workers=args.workers, force=args.force, progress=not args.quiet)
    console.print(ledger.render())
    console.print(f"run directory: {spec.output.dir}")
    return 0


def cmd_spark_submit(args) -> int:
    from winnow.spark.submit import submit_command

    console.print(submit_command(args.pipeline, args.master, pack=args.pack), soft_wrap=True)
    return 0


def cmd_validate(args) -> int:
    import yaml

    from winnow.errors import ConfigError
    from winnow.pipeline import load_pipeline
    from winnow.plan import make_plan

    try:
        data = yaml.safe_load(Path(args.pipeline).read_text())
    except (OSError, yaml.YAMLError):
        data = None  # load_pipeline reports these with the file and line
    if isinstance(data, dict) and "variants" in data and "stages" not in data:
        raise ConfigError(f"{args.pipeline}: an ablation config; run it with `winnow ablate`")
    spec = load_pipeline(args.pipeline)
    plan, _ = make_plan(spec)
    console.print(f"[green]ok[/green] {args.pipeline}: {len(spec.stages)} stages")
    for p in plan.passes:
        console.print(f"  {p.kind:6} pass {' -> '.join(p.stage_ids) or '(read only)'}")
    return 0


def cmd_stages(args) -> int:
    from rich.table import Table

    from winnow.stages import builtin_stages

    for name, cls in sorted(builtin_stages().items()):
        if args.name and name != args.name:
            continue
        doc = (cls.__doc__ or "").strip().splitlines()
        console.print(f"[bold]{name}[/bold] ({cls.kind}): {doc[0] if doc else ''}")
        table = Table(show_header=True, box=None, padding=(0, 2))
        for col in ("param", "type", "default", "help"):
            table.add_column(col)
        for pname, field in cls.Params.model_fields.items():
            default = (
                "required"
                if field.is_required()
                else repr(field.get_default(call_default_factory=True))
            )
            hint = getattr(field.annotation, "__name__", None) or str(field.annotation)
            table.add_row(pname, hint.replace("typing.", ""), default, field.description or "")
        console.print(table)
    return 0


def cmd_inspect(args) -> int:
    from winnow.report import inspect_run
    from winnow.runners.rundir import verify

    run_dir = Path(args.run_dir)
    problems = verify(run_dir) if (run_dir / "manifest.json").is_file() else []
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise WinnowError(f"{run_dir}: data/ does not match the ledger: {problems[0]}{more}")
    inspect_run(run_dir, console, rows=args.rows)
    return 0


def cmd_demo(args) -> int:
    from winnow.demo import run_demo

    return run_demo(Path(args.out), workers=args.workers, docs=args.docs, console=console)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="winnow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run a pipeline locally or on Spark")
    p.add_argument("pipeline")
    p.add_argument("--input", help="override input.path")
    p.add_argument("--output", help="override output.dir")
    p.add_argument("--workers", type=int, help="worker processes (default: runner.workers)")
    p.add_argument("--force", action="store_true", help="recompute completed stages")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--runner", choices=["local", "spark"], default="local")
    p.add_argument("--master", help="Spark master URL with --runner spark (default local[*])")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("spark-submit", help="print the spark-submit line for a pipeline")
    p.add_argument("pipeline")
    p.add_argument(
        "--master", required=True, help="Spark master URL (yarn, spark://..., k8s://...)"
    )
    p.add_argument("--pack", action="store_true", help="ship this venv as a venv-pack archive")
    p.set_defaults(func=cmd_spark_submit)

    p = sub.add_parser("validate", help="check a pipeline YAML without reading data")
    p.add_argument("pipeline")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("stages", help="list registered stages and their params")
    p.add_argument("name", nargs="?")
    p.set_defaults(func=cmd_stages)

    p = sub.add_parser("inspect", help="show a run's ledger, stats and sample rows")
    p.add_argument("run_dir")
    p.add_argument("--rows", type=int, default=3)
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("demo", help="build an offline corpus with known defects and curate it")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--docs", type=int, default=4000, help="clean documents before defects")
    p.set_defaults(func=cmd_demo)

    for name, module, helptext in EXTRA_COMMANDS:
        p = sub.add_parser(name, help=helptext, add_help=False)
        p.set_defaults(lazy=(module, name.replace("-", "_")))
    return parser


# Commands whose modules import heavy optional dependencies (torch, fasttext,
# tokenizers): their arguments are added only when the command is used.
EXTRA_COMMANDS = [
    ("train-tokenizer", "winnow.tokenizer", "train a byte-level BPE on a run's output"),
    ("train-classifier", "winnow.classifier", "train a fastText quality classifier"),
    ("train", "winnow.trainer.train", "train a proxy GPT on length buckets"),
    ("ablate", "winnow.trainer.ablate", "compare dataset variants with proxy models"),
    ("fit-weights", "winnow.trainer.fit_weights", "learn combine weights from proxy ablations"),
    ("publish", "winnow.hub.cli", "publish a run to the Hugging Face Hub as Parquet"),
    ("report", "winnow.html_report.cli", "write a self-contained HTML report of a run"),
]


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """Parse once; for a lazy command import its module and parse its own arguments."""
    import importlib

    parser = build_parser()
    args, _ = parser.parse_known_args(argv)
    if not hasattr(args, "lazy"):
        return parser.parse_args(argv)
    module_name, fname = args.lazy
    module = importlib.import_module(module_name)
    sub = argparse.ArgumentParser(prog=f"winnow {args.command}", description=module.__doc__)
    getattr(module, f"add_{fname}_args")(sub)
    argv = list(sys.argv[1:] if argv is None else argv)
    own = sub.parse_args(argv[argv.index(args.command) + 1 :])
    own.func = getattr(module, f"cli_{fname}")
    return own


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parse(argv)
        return args.func(args)
    except WinnowError as exc:
        print(f"winnow: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
