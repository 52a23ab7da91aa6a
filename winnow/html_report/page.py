"""Assemble the report: one static HTML file, plots inline, no scripts, no network.

Every number taken from the ledger carries ``data-stage`` / ``data-field`` attributes,
so tests (and curious users) can read them back from the page.
"""

from __future__ import annotations

import base64
import json
from html import escape
from pathlib import Path

from winnow.html_report import plots
from winnow.html_report.dag import dag_svg
from winnow.html_report.stats import RunStats
from winnow.hub.plan import stage_order

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1180px;padding:16px 24px;
color:#222}
h1{margin:.2em 0}h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:3px 10px;border-bottom:1px solid #eee;
text-align:left;vertical-align:top}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{border:1px solid #ddd;border-radius:8px;
padding:8px 14px}.card b{display:block;font-size:20px}img.plot{max-width:100%}
svg.dag rect{fill:#f3f6fb;stroke:#3b7dd8}svg.dag text{font:11px system-ui,sans-serif;fill:#222}
svg.dag text.name{font-weight:600}svg.dag text.edge{fill:#555}
pre.doc{white-space:pre-wrap;background:#f7f7f7;padding:6px;margin:2px 0 8px;max-height:9em;
overflow:auto;font-size:12px}code{font-size:12px}.muted{color:#777}
"""


def _n(value: int, stage: str | None = None, field: str | None = None) -> str:
    attrs = f' data-stage="{escape(stage)}" data-field="{field}"' if stage else ""
    return f'<td class="n"{attrs}>{value:,}</td>'


def _summary(s: RunStats) -> str:
    led = s.ledger
    cards = [
        ("input rows", led["input_rows"], "input_rows"),
        (f"kept in {s.output}", led["outputs"][s.output], "output"),
        ("rejected rows", led["rejected_rows"], "rejected_rows"),
        ("created rows", led["created_rows"], "created_rows"),
    ]
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card"><b data-total="{key}">{v:,}</b>{escape(label)}</div>'
            for label, v, key in cards
        )
        + "</div>"
    )


def _ledger(s: RunStats) -> str:
    head = "<tr><th>stage</th><th class=n>in</th><th class=n>created</th><th class=n>kept</th>"
    head += "<th class=n>rejected</th><th>reasons</th></tr>"
    rows = []
    for sid in stage_order(s.manifest, s.ledger):
        c = s.ledger["stages"][sid]
        rejected = sum(c["rejected"].values())
        reasons = ", ".join(f"{escape(k)}: {v:,}" for k, v in sorted(c["rejected"].items()))
        rows.append(
            f"<tr><td><code>{escape(sid)}</code></td>{_n(c['in'], sid, 'in')}"
            f"{_n(c['created'], sid, 'created')}{_n(c['kept'], sid, 'kept')}"
            f"{_n(rejected, sid, 'rejected')}<td>{reasons or '-'}</td></tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def _rejections(s: RunStats) -> str:
    stages = s.ledger["stages"]
    pairs = [
        (f"{sid}: {reason}", n)
        for sid in stage_order(s.manifest, s.ledger)
        for reason, n in sorted(stages[sid]["rejected"].items())
    ]
    if not pairs:
        return "<p>No rows were rejected.</p>"
    labels, values = zip(*pairs, strict=True)
    uri = plots.bar_chart(list(labels), list(values), "rejected rows per stage and reason")
    return f'<img class="plot" alt="rejected rows per stage and reason" src="{uri}">'


def _histograms(hists, what: str) -> str:
    if not hists:
        return f"<p>No {what} in this run.</p>"
    return f'<img class="plot" alt="{what}" src="{plots.histogram_grid(hists)}">'


def _buckets(s: RunStats) -> str:
    if not s.buckets:
        return "<p>This run has no length buckets.</p>"
    out = []
    for sid, b in s.buckets.items():
        total = sum(i["tokens"] for i in b["buckets"].values()) or 1
        rows = "".join(
            f"<tr><td>len_{n}</td>{_n(i['sequences'])}{_n(i['tokens'])}"
            f'<td class="n">{100 * i["tokens"] / total:.1f}%</td></tr>'
            for n, i in sorted(b["buckets"].items(), key=lambda kv: int(kv[0]))
        )
        concat = b.get("concat") or {}
        extra = (
            f"; concat baseline: {concat['sequences']:,} sequences of {concat['len']}"
            if concat
            else ""
        )
        out.append(
            f"<h3><code>{escape(sid)}</code></h3><table><tr><th>bucket</th><th class=n>sequences"
            f"</th><th class=n>tokens</th><th class=n>share</th></tr>{rows}</table>"
            f"<p>{b.get('documents', 0):,} documents, {b.get('input_tokens', 0):,} tokens; "
            f"dropped tail: {b.get('dropped_tokens', 0):,} tokens{extra}. Token dtype "
            f"<code>{escape(str(b.get('token_dtype')))}</code>, "
            f"vocabulary {b.get('vocab_size')}.</p>"
        )
    return "".join(out)


def _clusters(s: RunStats) -> str:
    if not any(s.clusters.values()):
        return "<p>No duplicate groups among the kept rows.</p>"
    out = []
    titles = {"dup_count": "exact-duplicate groups", "cluster_size": "near-duplicate clusters"}
    for col, sizes in s.clusters.items():
        if sizes:
            labels = [str(a) for a, _ in sizes]
            uri = plots.bar_chart(labels, [b for _, b in sizes], f"{titles[col]} by size", False)
            out.append(f'<img class="plot" alt="{titles[col]}" src="{uri}">')
    return "".join(out)


def _doc(row: dict) -> str:
    text = row.get("text")
    body = escape(text) if text is not None else '<span class="muted">(no text)</span>'
    reason = f" · {escape(row['reason'])}" if row.get("reason") else ""
    return f"<div><code>{escape(str(row['id']))}</code>{reason}<pre class=doc>{body}</pre></div>"


def _examples(s: RunStats) -> str:
    out = ["<details open><summary>kept</summary>" + "".join(map(_doc, s.kept_examples))]
    out.append("</details>")
    for (stage, reason), rows in s.rejected_examples.items():
        out.append(
            f"<details><summary>rejected by <code>{escape(stage)}</code>: {escape(reason)}"
            f"</summary>{''.join(map(_doc, rows))}</details>"
        )
    return "".join(out)


def _ablation(path: Path | None) -> str:
    if path is None or not (path / "results.json").exists():
        return ""
    res = json.loads((path / "results.json").read_text())
    primary = res["primary"]
    rows = []
    for v in res["ranking"]:
        m = res["variants"][v].get(primary, {})
        delta = m.get("delta")
        diff = f"{delta:+.4f} ± {m.get('delta_ci95', 0):.4f}" if delta is not None else "baseline"
        rows.append(
            f"<tr><td>{escape(v)}</td><td class=n>{m.get('mean', float('nan')):.4f} ± "
            f"{m.get('ci95', 0):.4f}</td><td class=n>{diff}</td></tr>"
        )
    imgs = "".join(
        f'<img class="plot" alt="{p.stem}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode()}">'
        for p in (path / "loss_curves.png", path / "metrics.png")
        if p.exists()
    )
    return (
        f"<h2>Ablation: {escape(res.get('name', ''))}</h2><p>Ranking by <code>{escape(primary)}"
        f"</code> (best first), mean ± 95% interval over seeds {res.get('seeds')}.</p><table>"
        f"<tr><th>variant</th><th class=n>{escape(primary)}</th><th class=n>vs "
        f"{escape(str(res.get('baseline')))}</th></tr>{''.join(rows)}</table>{imgs}"
    )


def _reproduce(s: RunStats) -> str:
    m = s.manifest
    passes = "".join(
        f"<tr><td><code>{escape(k)}</code></td><td><code>{v}</code></td></tr>"
        for k, v in sorted(m.get("pass_hashes", {}).items())
    )
    versions = ", ".join(f"{escape(k)} {escape(str(v))}" for k, v in sorted(m["versions"].items()))
    return (
        f"<p>seed {m.get('seed')}, config hash <code>{m.get('config_hash')}</code></p>"
        f"<p>{versions}</p><table><tr><th>pass</th><th>hash</th></tr>{passes}</table>"
    )


def render(s: RunStats, ablation: Path | None = None) -> str:
    order = [st["id"] for st in s.manifest["config"]["stages"]]
    uses = {st["id"]: st["use"] for st in s.manifest["config"]["stages"]}
    name = escape(s.manifest.get("name", "run"))
    body = [
        f"<h1>winnow run report: {name}</h1>",
        f'<p class="muted">{escape(str(s.run_dir))} · output <code>{escape(s.output)}</code></p>',
        _summary(s),
        "<h2>Pipeline</h2><p>Rows on each arrow are what the parent kept.</p>",
        dag_svg(s.ledger, order, uses),
        "<h2>Ledger</h2>",
        _ledger(s),
        "<h2>Rejected rows</h2>",
        _rejections(s),
        "<h2>Scores</h2><p>Kept rows and the rows its lineage rejected, stacked; dashed lines "
        "are the thresholds in <code>filter</code> stages.</p>",
        _histograms(s.scores, "score columns"),
        "<h2>Lengths and tokens</h2>",
        _histograms(s.lengths, "length columns"),
        "<h2>Length buckets</h2>",
        _buckets(s),
        "<h2>Duplicates</h2>",
        _clusters(s),
        "<h2>Examples</h2>",
        _examples(s),
        _ablation(ablation),
        "<h2>Reproducibility</h2>",
        _reproduce(s),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<link rel="icon" href="data:,">'
        f"<title>winnow report: {name}</title><style>{CSS}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
