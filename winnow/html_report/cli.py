"""``winnow report RUN_DIR``: write a self-contained HTML report of a finished run."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path)
    p.add_argument("--out", type=Path, help="HTML file (default RUN_DIR/report.html)")
    p.add_argument("--output", help="the run output to describe (default: the last one)")
    p.add_argument("--ablation", type=Path, help="ablation folder with results.json")
    p.add_argument("--examples", type=int, default=3, help="example documents per reason")


def cli_report(args) -> int:
    from winnow.hub.cli import require

    require(("matplotlib",), "train")
    from winnow.html_report import write_report

    path = write_report(
        args.run_dir, args.out, output=args.output, ablation=args.ablation, examples=args.examples
    )
    print(f"report: {path}")
    return 0
