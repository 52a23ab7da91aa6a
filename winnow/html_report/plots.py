"""Static plots for the HTML report: matplotlib figures as ``data:`` SVG image URIs.

Each plot is its own ``<img>`` (no SVG ids shared across the page), and the SVG
is deterministic (fixed hash salt, no date), so the same run gives the same report.
"""

from __future__ import annotations

import base64
import io
import math

from winnow.html_report.stats import Histogram

KEPT, REJECTED, LINE = "#3b7dd8", "#d8553b", "#222222"


def _figure(width: float, height: float, layout: str | None = "constrained"):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(fig)
    return fig


def svg_uri(fig) -> str:
    import matplotlib

    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "winnow", "svg.fonttype": "none"}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode()


def _draw_hist(ax, hist: Histogram) -> None:
    """Kept and rejected counts stacked, as two filled step areas (two artists, not
    one rectangle per bin: fast for dozens of panels)."""
    kept = hist.counts["kept"]
    total = [k + r for k, r in zip(kept, hist.counts["rejected"], strict=True)]
    ax.stairs(kept, hist.edges, fill=True, color=KEPT, label="kept")
    ax.stairs(total, hist.edges, baseline=kept, fill=True, color=REJECTED, label="rejected")
    for stage, value in hist.thresholds:
        ax.axvline(value, color=LINE, linestyle="--", linewidth=1)
        ax.annotate(stage, (value, 1), xycoords=("data", "axes fraction"), fontsize=7, ha="left")
    ax.set_title(hist.column, fontsize=8)
    ax.tick_params(labelsize=7)


def histogram_grid(hists: list[Histogram], cols: int = 4) -> str:
    rows = math.ceil(len(hists) / cols)
    fig = _figure(2.6 * cols, 1.9 * rows, layout=None)
    for i, hist in enumerate(hists):
        ax = fig.add_subplot(rows, cols, i + 1)
        _draw_hist(ax, hist)
        if i == 0:
            ax.legend(fontsize=7)
    top = 1 - 0.35 / (1.9 * rows)
    fig.subplots_adjust(hspace=0.6, wspace=0.3, left=0.05, right=0.98, top=top, bottom=0.2 / rows)
    return svg_uri(fig)


def bar_chart(labels: list[str], values: list[int], title: str, horizontal: bool = True) -> str:
    if horizontal:
        fig = _figure(7, max(1.6, 0.28 * len(labels) + 0.8))
    else:
        fig = _figure(min(7, 1.5 + 0.4 * len(labels)), 2.4)
    ax = fig.add_subplot()
    if horizontal:
        ax.barh(range(len(values)), values, color=REJECTED)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.invert_yaxis()
        for i, v in enumerate(values):
            ax.annotate(
                f"{v:,}", (v, i), fontsize=7, va="center", xytext=(3, 0), textcoords="offset points"
            )
    else:
        ax.bar(range(len(values)), values, color=KEPT)
        ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=8)
    return svg_uri(fig)
