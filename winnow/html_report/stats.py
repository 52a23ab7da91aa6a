"""Run statistics for the HTML report, computed with DuckDB over the run's Arrow files.

The files are scanned as pyarrow datasets (memory-mapped, streamed, only the columns
a query names), so a large run costs a few column scans and bounded memory: every
histogram is aggregated in DuckDB, and document examples are a ``LIMIT`` per reason.
"Kept" rows are the published output's shards; "rejected" rows are those dropped by
the stages of its lineage (they keep the columns computed before they were dropped,
so a filter's threshold sits between the two populations in a score histogram).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as pads

from winnow.errors import WinnowError
from winnow.hub.plan import default_output, lineage

BINS = 40
SNIPPET = 400  # characters of text shown per example
NOT_SCORES = {"n_sequences", "dropped_tokens", "dup_count", "cluster_size", "line", "offset"}
THRESHOLD = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|<|>)\s*(-?\d+(?:\.\d+)?)")


@dataclass
class Histogram:
    column: str
    edges: list[float]
    counts: dict[str, list[int]]  # population ("kept", "rejected") -> count per bin
    thresholds: list[tuple[str, float]] = field(default_factory=list)  # (filter stage, value)


@dataclass
class RunStats:
    run_dir: Path
    output: str
    manifest: dict
    ledger: dict
    scores: list[Histogram]
    lengths: list[Histogram]  # text characters, tokens
    clusters: dict[str, list[tuple[int, int]]]  # column -> [(group size, groups)]
    kept_examples: list[dict]
    rejected_examples: dict[tuple[str, str], list[dict]]  # (stage, reason) -> rows
    buckets: dict[str, dict]  # decompose stage -> its bucket manifest


def _dataset(files: list[Path]) -> pads.Dataset | None:
    """Arrow IPC shards, or Parquet ones for runs with ``output.format: parquet``."""
    if not files:
        return None
    fmt = "parquet" if files[0].suffix == ".parquet" else "ipc"
    return pads.dataset([str(f) for f in files], format=fmt)


def _numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def filter_thresholds(manifest: dict) -> dict[str, list[tuple[str, float]]]:
    """``column <op> number`` comparisons in the ``filter`` stages' SQL."""
    out: dict[str, list[tuple[str, float]]] = {}
    for s in manifest["config"]["stages"]:
        if s.get("use") == "filter":
            for col, _, value in THRESHOLD.findall(str(s.get("params", {}).get("keep", ""))):
                out.setdefault(col, []).append((s["id"], float(value)))
    return out


class _Scanner:
    """DuckDB views over the kept shards and each lineage stage's rejected rows."""

    def __init__(self, run_dir: Path, manifest: dict, ledger: dict, output: str):
        self.con = duckdb.connect()
        self.con.execute("SET threads TO 2")
        out = manifest["outputs"][output]
        self.views: dict[str, pa.Schema] = {}  # view name -> schema
        self.stage_of: dict[str, str] = {}
        self._add("kept", [run_dir / out["dir"] / s["file"] for s in out["shards"]])
        for i, stage in enumerate(reversed(lineage(ledger, output))):
            files = sorted((run_dir / "rejected" / stage).glob("part-*.arrow"))
            if self._add(f"rej{i}", files):
                self.stage_of[f"rej{i}"] = stage

    def _add(self, name: str, files: list[Path]) -> bool:
        ds = _dataset(files)
        if ds is None or ds.count_rows() == 0:
            return False
        self.con.register(name, ds)
        self.views[name] = ds.schema
        return True

    def having(self, column: str) -> list[str]:
        return [v for v, schema in self.views.items() if column in schema.names]

    def union(self, expr: str, column: str) -> str:
        parts = [
            f"SELECT {expr} AS x, '{'kept' if v == 'kept' else 'rejected'}' AS g FROM {v}"
            for v in self.having(column)
        ]
        return " UNION ALL ".join(parts)

    def histogram(self, column: str, expr: str | None = None, clip: bool = False):
        expr = expr or f'CAST("{column}" AS DOUBLE)'
        source = self.union(expr, column)
        if not source:
            return None
        q = f"SELECT x, g FROM ({source}) WHERE x IS NOT NULL AND isfinite(x)"
        hi_expr = "quantile_cont(x, 0.99)" if clip else "max(x)"
        lo, hi = self.con.execute(f"SELECT min(x), {hi_expr} FROM ({q})").fetchone()
        if lo is None:
            return None
        width = (hi - lo) / BINS if hi > lo else 1.0
        rows = self.con.execute(
            f"SELECT g, LEAST(GREATEST(CAST(floor((x - ?) / ?) AS INTEGER), 0), {BINS - 1}) b, "
            f"count(*) FROM ({q}) GROUP BY 1, 2",
            [lo, width],
        ).fetchall()
        counts = {g: [0] * BINS for g in ("kept", "rejected")}
        for g, b, n in rows:
            counts[g][b] += n
        edges = [lo + width * i for i in range(BINS + 1)]
        return Histogram(column, edges, counts)

    def score_histograms(self, columns: list[str]) -> list[Histogram]:
        """Every column at once: per view, one scan for the ranges and one for the bins
        (DuckDB ``histogram`` aggregates), instead of two scans per column."""
        x = {c: f'CAST("{c}" AS DOUBLE)' for c in columns}
        finite = {c: f"FILTER (WHERE isfinite({x[c]}))" for c in columns}
        lo: dict[str, float] = {}
        hi: dict[str, float] = {}
        for view, schema in self.views.items():
            cols = [c for c in columns if c in schema.names]
            if not cols:
                continue
            aggs = ", ".join(f"min({x[c]}) {finite[c]}, max({x[c]}) {finite[c]}" for c in cols)
            row = self.con.execute(f"SELECT {aggs} FROM {view}").fetchone()
            for c, a, b in zip(cols, row[::2], row[1::2], strict=True):
                if a is not None:
                    lo[c], hi[c] = min(lo.get(c, a), a), max(hi.get(c, b), b)
        width = {c: (hi[c] - lo[c]) / BINS if hi[c] > lo[c] else 1.0 for c in lo}
        counts = {c: {"kept": [0] * BINS, "rejected": [0] * BINS} for c in lo}
        for view, schema in self.views.items():
            cols = [c for c in lo if c in schema.names]
            if not cols:
                continue
            aggs = ", ".join(
                f"histogram(LEAST(GREATEST(CAST(floor(({x[c]} - {lo[c]!r}) / {width[c]!r}) "
                f"AS INTEGER), 0), {BINS - 1})) {finite[c]}"
                for c in cols
            )
            group = "kept" if view == "kept" else "rejected"
            row = self.con.execute(f"SELECT {aggs} FROM {view}").fetchone()
            for c, bins in zip(cols, row, strict=True):
                for b, n in (bins or {}).items():
                    counts[c][group][b] += n
        return [
            Histogram(c, [lo[c] + width[c] * i for i in range(BINS + 1)], counts[c])
            for c in columns
            if c in lo
        ]

    def group_sizes(self, column: str) -> list[tuple[int, int]]:
        source = self.union(f'"{column}"', column)
        if not source:
            return []
        q = f"SELECT x, count(*) FROM ({source}) WHERE x > 1 GROUP BY 1 ORDER BY 1"
        return [(int(a), int(b)) for a, b in self.con.execute(q).fetchall()]

    def text_expr(self, view: str) -> str:
        names = self.views[view].names
        col = "text" if "text" in names else "raw" if "raw" in names else None
        return f'substr(CAST("{col}" AS VARCHAR), 1, {SNIPPET})' if col else "NULL"

    def kept_examples(self, n: int) -> list[dict]:
        q = f"SELECT id, {self.text_expr('kept')} AS text FROM kept ORDER BY id LIMIT {n}"
        return [dict(zip(("id", "text"), r, strict=True)) for r in self.con.execute(q).fetchall()]

    def rejected_examples(self, n: int) -> dict[tuple[str, str], list[dict]]:
        """The ``n`` smallest ids per (stage, reason class): a grouped top-n, then a
        second scan fetches just those rows' text (memory bounded by the sample)."""
        out: dict[tuple[str, str], list[dict]] = {}
        cls = "split_part(reason, ':', 1)"
        for view, stage in self.stage_of.items():
            top = f"SELECT min_by(id, id, {n}) ids FROM {view} GROUP BY {cls}"
            q = f"SELECT flatten(list(ids)) FROM ({top})"
            ids = self.con.execute(q).fetchone()[0] or []
            q = (
                f"SELECT {cls}, id, reason, {self.text_expr(view)} FROM {view} "
                "WHERE list_contains(?, id) ORDER BY 1, 2"
            )
            for c, rid, reason, text in self.con.execute(q, [ids]).fetchall():
                out.setdefault((stage, c), []).append({"id": rid, "reason": reason, "text": text})
        return dict(sorted(out.items()))


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise WinnowError(f"{path.parent}: not a finished run (no {path.name})") from None


def collect(run_dir: Path, output: str | None = None, examples: int = 3) -> RunStats:
    run_dir = Path(run_dir)
    manifest = _read_json(run_dir / "manifest.json")
    ledger = _read_json(run_dir / "ledger.json")
    output = output or default_output(manifest, ledger)
    scan = _Scanner(run_dir, manifest, ledger, output)
    thresholds = filter_thresholds(manifest)
    columns: dict[str, None] = {}
    for schema in scan.views.values():
        for f in schema:
            if _numeric(f.type) and f.name not in NOT_SCORES and f.name != "n_tokens":
                columns[f.name] = None
    scores = scan.score_histograms(list(columns))
    for hist in scores:
        hist.thresholds = thresholds.get(hist.column, [])
    lengths = [
        h
        for h in (
            scan.histogram("text", 'CAST(length("text") AS DOUBLE)', clip=True),
            scan.histogram("n_tokens", clip=True),
        )
        if h is not None
    ]
    if lengths and lengths[0].column == "text":
        lengths[0].column = "text length (characters)"
    clusters = {c: scan.group_sizes(c) for c in ("dup_count", "cluster_size") if scan.having(c)}
    stages = {s["id"]: s for s in manifest["config"]["stages"]}
    buckets = {}
    for sid in lineage(ledger, output):
        if stages.get(sid, {}).get("use") == "decompose":
            path = run_dir / stages[sid]["params"].get("dir", "buckets") / "manifest.json"
            if path.exists():
                buckets[sid] = json.loads(path.read_text())
    return RunStats(
        run_dir,
        output,
        manifest,
        ledger,
        scores,
        lengths,
        clusters,
        scan.kept_examples(examples),
        scan.rejected_examples(examples),
        buckets,
    )
