"""``winnow report``: the HTML report, opened in a real headless Chromium.

Golden numbers come from ledger.json and from pyarrow reads of the run's files,
never from the report code.
"""

# ruff: noqa: F811  (pytest fixtures imported from hub_fixtures are test arguments)

from __future__ import annotations

import json
import os
import re

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from chromium import chromium_path, load_page
from hub_fixtures import hub_run  # noqa: F401

from winnow.cli import main
from winnow.html_report import write_report
from winnow.html_report.stats import collect

needs_chromium = pytest.mark.skipif(
    chromium_path() is None and os.environ.get("WINNOW_REQUIRE_CHROMIUM") != "1",
    reason="Debian's chromium is not installed (.ci/run installs it)",
)

READ_NUMBERS = """(() => ({
  cells: [...document.querySelectorAll('[data-stage][data-field]')]
           .map(e => [e.dataset.stage, e.dataset.field, e.textContent]),
  totals: Object.fromEntries([...document.querySelectorAll('[data-total]')]
           .map(e => [e.dataset.total, e.textContent])),
  edges: [...document.querySelectorAll('[data-edge]')].map(e => [e.dataset.edge, e.textContent]),
  images: [...document.images].map(i => i.complete && i.naturalWidth > 0),
}))()"""


def _int(text: str) -> int:
    return int(text.replace(",", ""))


def _table(files) -> pa.Table:
    return pa.concat_tables(pa.ipc.open_file(pa.memory_map(str(f))).read_all() for f in files)


@pytest.fixture(scope="module")
def report(hub_run, tmp_path_factory):
    return write_report(hub_run, tmp_path_factory.mktemp("report") / "report.html")


@needs_chromium
def test_report_loads_in_chromium_without_errors_and_shows_the_ledger(hub_run, report, tmp_path):
    page = load_page(report.as_uri(), READ_NUMBERS, height=4000)
    assert page.errors == []
    assert page.screenshot.startswith(b"\x89PNG") and len(page.screenshot) > 50_000
    (tmp_path / "report.png").write_bytes(page.screenshot)
    value = page.value
    assert value["images"] and all(value["images"])  # every inline plot decoded
    ledger = json.loads((hub_run / "ledger.json").read_text())
    shown = {(stage, field): _int(text) for stage, field, text in value["cells"]}
    want = {}
    for sid, c in ledger["stages"].items():
        want |= {(sid, f): c[f] for f in ("in", "created", "kept")}
        want[(sid, "rejected")] = sum(c["rejected"].values())
    assert shown == want
    totals = {k: _int(v) for k, v in value["totals"].items()}
    assert totals == {
        "input_rows": ledger["input_rows"],
        "output": ledger["outputs"]["buckets"],
        "rejected_rows": ledger["rejected_rows"],
        "created_rows": ledger["created_rows"],
    }
    edges = {e: _int(t) for e, t in value["edges"]}
    want_edges = {
        f"{p}->{sid}": ledger["stages"][p]["kept"]
        for sid, parents in ledger["parents"].items()
        for p in parents
    }
    assert edges == want_edges


@needs_chromium
def test_the_browser_check_catches_errors(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text('<img src="missing.png"><script>console.error("boom")</script>')
    errors = load_page(bad.as_uri()).errors
    assert any("boom" in e for e in errors) and any("load failed" in e for e in errors)


def test_histograms_count_every_kept_and_rejected_row(hub_run):
    stats = collect(hub_run)
    hist = next(h for h in stats.scores if h.column == "gopher_dup_line_frac")
    kept = _table(sorted((hub_run / "data").glob("*.arrow")))
    rejected = _table(sorted((hub_run / "rejected" / "quality_filter").glob("*.arrow")))
    assert sum(hist.counts["kept"]) == len(kept) - kept["gopher_dup_line_frac"].null_count
    assert sum(hist.counts["rejected"]) == len(rejected)
    assert hist.thresholds == [("quality_filter", 0.3)]
    both = pa.chunked_array(
        kept["gopher_dup_line_frac"].chunks + rejected["gopher_dup_line_frac"].chunks
    )
    lo, hi = hist.edges[0], hist.edges[-1]
    assert lo == pc.min(both).as_py() and hi == pytest.approx(pc.max(both).as_py())
    # rows above the threshold were all rejected: no kept mass past 0.3
    width = hist.edges[1] - hist.edges[0]
    first_above = int((0.3 - lo) // width) + 1
    assert sum(hist.counts["kept"][first_above:]) == 0
    ledger = json.loads((hub_run / "ledger.json").read_text())
    examples = {k: len(v) for k, v in stats.rejected_examples.items()}
    want = {
        (s, r): min(3, n) for s, c in ledger["stages"].items() for r, n in c["rejected"].items()
    }
    assert examples == want


def test_report_is_self_contained_and_deterministic(hub_run, report, tmp_path, capsys):
    html = report.read_text()
    refs = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert refs and all(r.startswith("data:") for r in refs)
    assert "<script" not in html
    again = tmp_path / "again.html"
    assert main(["report", str(hub_run), "--out", str(again)]) == 0
    assert f"report: {again}" in capsys.readouterr().out
    assert again.read_bytes() == report.read_bytes()
