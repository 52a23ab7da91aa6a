"""The pipeline DAG as inline SVG: one box per stage (kept rows, rejected rows), one
arrow per edge labelled with the rows it carries (what the parent kept).

Layout: a stage's layer is its longest distance from ``read``; stages within a layer
keep pipeline order. Small pipelines only need this; no graph library.
"""

from __future__ import annotations

from html import escape

BOX_W, BOX_H, GAP_X, GAP_Y, PAD = 170, 44, 30, 46, 12


def layers(ledger: dict, order: list[str]) -> list[list[str]]:
    parents = ledger["parents"]
    depth: dict[str, int] = {}

    def d(sid: str) -> int:
        if sid not in depth:
            depth[sid] = 1 + max((d(p) for p in parents.get(sid, [])), default=-1)
        return depth[sid]

    rank = {sid: i for i, sid in enumerate(["read", *order])}
    for sid in parents:
        d(sid)
    out: list[list[str]] = [[] for _ in range(max(depth.values()) + 1)]
    for sid in sorted(depth, key=lambda s: (depth[s], rank.get(s, len(rank)), s)):
        out[depth[sid]].append(sid)
    return out


def dag_svg(ledger: dict, order: list[str], uses: dict[str, str]) -> str:
    rows = layers(ledger, order)
    width = PAD * 2 + max(len(r) for r in rows) * (BOX_W + GAP_X) - GAP_X
    height = PAD * 2 + len(rows) * (BOX_H + GAP_Y) - GAP_Y
    pos = {}
    for y, row in enumerate(rows):
        offset = (width - (len(row) * (BOX_W + GAP_X) - GAP_X)) / 2
        for x, sid in enumerate(row):
            pos[sid] = (offset + x * (BOX_W + GAP_X), PAD + y * (BOX_H + GAP_Y))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="dag" width="{width:.0f}" '
        f'height="{height}" viewBox="0 0 {width:.0f} {height}" role="img">',
        '<defs><marker id="dag-arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#777"/></marker></defs>',
    ]
    stages = ledger["stages"]
    for sid, parents in ledger["parents"].items():
        for p in parents:
            x1, y1 = pos[p][0] + BOX_W / 2, pos[p][1] + BOX_H
            x2, y2 = pos[sid][0] + BOX_W / 2, pos[sid][1]
            rows_on_edge = stages[p]["kept"]
            parts.append(
                f'<line x1="{x1:.0f}" y1="{y1}" x2="{x2:.0f}" y2="{y2}" stroke="#777" '
                'marker-end="url(#dag-arrow)"/>'
            )
            parts.append(
                f'<text class="edge" data-edge="{escape(p)}->{escape(sid)}" '
                f'x="{(x1 + x2) / 2 + 4:.0f}" y="{(y1 + y2) / 2 + 4:.0f}">{rows_on_edge:,}</text>'
            )
    for sid, (x, y) in pos.items():
        c = stages[sid]
        rejected = sum(c["rejected"].values())
        label = f"{escape(sid)}" + (f" · {escape(uses[sid])}" if sid in uses else "")
        detail = f"kept {c['kept']:,}" + (f" · rejected {rejected:,}" if rejected else "")
        parts.append(
            f'<g class="node" data-stage="{escape(sid)}"><rect x="{x:.0f}" y="{y}" '
            f'width="{BOX_W}" height="{BOX_H}" rx="6"/>'
            f'<text x="{x + 8:.0f}" y="{y + 18}" class="name">{label}</text>'
            f'<text x="{x + 8:.0f}" y="{y + 35}">{detail}</text></g>'
        )
    parts.append("</svg>")
    return "\n".join(parts)
