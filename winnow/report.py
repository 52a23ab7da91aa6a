"""The human-facing view of a finished run: ``winnow inspect RUN_DIR``."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from winnow.errors import WinnowError
from winnow.io.writers import read_table
from winnow.ledger import Ledger
from winnow.table import ID, REASON, TEXT


def _snippet(text, width: int = 90) -> str:
    text = "" if text is None else str(text).replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def _first_rows(files: list[Path], n: int) -> list[dict]:
    rows: list[dict] = []
    for path in files:
        if len(rows) >= n:
            break
        rows.extend(read_table(path).slice(0, n - len(rows)).to_pylist())
    return rows


def load_ledger(run_dir: Path) -> Ledger:
    path = run_dir / "ledger.json"
    if not path.exists():
        raise WinnowError(f"{run_dir}: not a finished run (no ledger.json)")
    return Ledger.from_json(json.loads(path.read_text()))


def inspect_run(run_dir: Path, console: Console, rows: int = 3) -> None:
    """Print the ledger, per-stage stats and a few kept and rejected rows."""
    ledger = load_ledger(run_dir)
    console.print(ledger.render())
    stats = Table(title="stage statistics", box=None)
    for col in ("stage", "stat", "value"):
        stats.add_column(col)
    for sid, count in ledger.stages.items():
        for key, value in sorted(count.stats.items()):
            stats.add_row(sid, key, f"{value:g}")
    if stats.row_count:
        console.print(stats)
    kept = Table(title="sample kept rows", box=None)
    for col in (ID, TEXT):
        kept.add_column(col)
    for row in _first_rows(sorted((run_dir / "data").rglob("shard-*")), rows):
        kept.add_row(str(row.get(ID)), _snippet(row.get(TEXT)))
    console.print(kept)
    rejected = Table(title="sample rejected rows", box=None)
    for col in ("stage", ID, REASON, "text"):
        rejected.add_column(col)
    for stage_dir in sorted((run_dir / "rejected").glob("*")):
        for row in _first_rows(sorted(stage_dir.glob("part-*.arrow")), rows):
            text = row.get(TEXT, row.get("raw"))
            rejected.add_row(stage_dir.name, str(row.get(ID)), row.get(REASON), _snippet(text, 60))
    console.print(rejected)
