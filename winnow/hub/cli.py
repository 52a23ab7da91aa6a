"""``winnow publish RUN_DIR REPO_ID``: stage, verify and push a run to the Hub.

The token comes from huggingface_hub's own resolution (HF_TOKEN, `hf auth login`);
there is deliberately no token flag. Exit status 75 means an interrupted push:
re-run the same command to resume.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

EXIT_RESUMABLE = 75  # EX_TEMPFAIL


def add_publish_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path)
    p.add_argument("repo_id", help="NAMESPACE/NAME of the dataset repo")
    p.add_argument("--dry-run", action="store_true", help="stage and verify only, no network")
    p.add_argument("--out", type=Path, help="staging folder (default RUN_DIR/publish/tree)")
    p.add_argument("--output", help="the run output to publish (default: the last one)")
    p.add_argument("--concat", action="store_true", help="also publish the concat baseline")
    p.add_argument("--rejected", action="store_true", help="also publish rejected rows")
    p.add_argument("--shard-mb", type=int, default=500, help="Parquet shard size in MB")
    p.add_argument("--license", help="SPDX-like Hub license id; required with --public")
    p.add_argument("--language", action="append", default=[], help="ISO code, repeatable")
    p.add_argument("--pretty-name", help="card title (default: the repo name)")
    p.add_argument("--notes", type=Path, help="markdown with ## Limitations / ## Personal ...")
    p.add_argument("--public", action="store_true", help="create a public repo (default private)")
    p.add_argument("--yes", action="store_true", help="publish publicly with TODO card sections")
    p.add_argument("--revision", default="main", help="branch (created from main if missing)")
    p.add_argument("--create-pr", action="store_true", help="open a pull request instead")
    p.add_argument("--endpoint", default=os.environ.get("HF_ENDPOINT"), help="Hub URL")
    p.add_argument("--max-files", type=int, default=100, help="files per commit")
    p.add_argument("--retries", type=int, default=6, help="attempts per commit (backoff 1s, 2s..)")


def require(modules: tuple[str, ...], extra: str) -> None:
    """A one-line error naming the pip extra when an optional dependency is missing."""
    import importlib.util

    from winnow.errors import WinnowError

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise WinnowError(f"needs {', '.join(missing)}: pip install 'winnow[{extra}]'")


def cli_publish(args) -> int:
    require(("datasets", "huggingface_hub"), "hf")
    from winnow.hub import CardOptions, PushInterrupted, RetryPolicy, plan_publish, publish
    from winnow.hub.card import read_notes

    try:
        plan = plan_publish(
            args.run_dir,
            args.repo_id,
            output=args.output,
            concat=args.concat,
            rejected=args.rejected,
            shard_bytes=args.shard_mb * 1024 * 1024,
        )
        card = CardOptions(
            license=args.license,
            language=tuple(args.language),
            pretty_name=args.pretty_name,
            notes=read_notes(args.notes) if args.notes else {},
        )
        publish(
            plan,
            args.out or args.run_dir / "publish" / "tree",
            card,
            dry_run=args.dry_run,
            public=args.public,
            yes=args.yes,
            endpoint=args.endpoint,
            revision=args.revision,
            create_pr=args.create_pr,
            max_files=args.max_files,
            retry=RetryPolicy(attempts=max(1, args.retries)),
        )
    except PushInterrupted as exc:
        print(f"winnow: {exc}")
        return EXIT_RESUMABLE
    return 0
