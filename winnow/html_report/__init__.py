"""``winnow report RUN_DIR``: a self-contained HTML report of a finished run.

What a curator looks at: the DAG with rows per edge, rejections per stage and
reason, score histograms with the filter thresholds drawn on them, lengths and
tokens, the length buckets, duplicate cluster sizes, example documents per reason,
and an ablation's ranking and loss curves when there is one. Statistics come from
DuckDB over the run's Arrow files (:mod:`.stats`); plots are static matplotlib SVGs
inlined as data URIs (:mod:`.plots`); the page has no scripts and opens offline.
"""

from __future__ import annotations

from pathlib import Path

from winnow.files import atomic_write
from winnow.html_report.page import render
from winnow.html_report.stats import collect

__all__ = ["write_report"]


def write_report(
    run_dir: Path,
    out: Path | None = None,
    *,
    output: str | None = None,
    ablation: Path | None = None,
    examples: int = 3,
) -> Path:
    """Write the report (default ``RUN_DIR/report.html``) and return its path.

    ``ablation`` is an ablation output folder (with ``results.json``); by default
    ``RUN_DIR/../ablation`` is used when it exists (the demo's layout)."""
    run_dir = Path(run_dir)
    out = Path(out) if out else run_dir / "report.html"
    if ablation is None and (run_dir.parent / "ablation" / "results.json").exists():
        ablation = run_dir.parent / "ablation"
    html = render(collect(run_dir, output, examples), ablation)
    atomic_write(out, html.encode("utf-8"), durable=False)
    return out
