"""Publish throughput against the loopback Hub, and report generation time.

    python benchmarks/publish.py publish --docs 4000        # a demo run (demo corpus + pipeline)
    python benchmarks/publish.py publish --gb 1             # a ~1 GB synthetic run
    python benchmarks/publish.py report --rows 1000000      # report for a 1M-row run

``publish``: times stage + verify, then ``push_tree`` to a fresh loopback server
(tests/hub_server.py, the real huggingface_hub client, HF_HUB_DISABLE_XET=1), then an
unchanged re-publish; the peer is ``HfApi.upload_folder`` of the same tree to another
fresh server (one commit, no diff, no ordering). ``report``: times ``winnow report``
and its DuckDB statistics in a subprocess each (peak RSS), against a pandas peer that
reads the same Arrow files and computes the same histograms with numpy.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_TOKEN"] = "hf_benchmark"

SYNTH = """\
name: synth
seed: 0
input: {{path: "{input}", format: parquet, text_field: text, id_field: id}}
output: {{dir: "{run}", format: arrow}}
runner: {{workers: 2, chunk_rows: 20000}}
stages:
  - {{id: normalize, use: normalize}}
  - id: long_enough
    use: filter
    params: {{keep: "length(text) >= 100", reason: too_short}}
{extra}"""
SCORE = """\
  - id: quality
    use: score
    params: {scorers: [{use: c4_quality}]}
  - id: quality_filter
    use: filter
    params: {keep: "coalesce(c4_quality_pass, true)", reason: low_quality}
"""


def synth_corpus(folder: Path, rows: int, chars: int) -> None:
    """Documents stitched from real docstring paragraphs, about ``chars`` each."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from winnow.sample_text import docstrings

    paragraphs = [p for d in docstrings() for p in d["text"].split("\n\n") if len(p) > 20]
    rng = random.Random(0)
    folder.mkdir(parents=True)
    per_file = 100_000
    for f in range(-(-rows // per_file)):
        n = min(per_file, rows - f * per_file)
        texts = []
        for _ in range(n):
            parts, size = [], 0
            while size < chars:
                parts.append(rng.choice(paragraphs))
                size += len(parts[-1])
            texts.append("\n\n".join(parts)[: chars * 2])
        ids = [f"doc-{f}-{i}" for i in range(n)]
        pq.write_table(pa.table({"id": ids, "text": texts}), folder / f"part-{f:03d}.parquet")


def synth_run(root: Path, rows: int, chars: int, score: bool) -> Path:
    from winnow.cli import main

    synth_corpus(root / "input", rows, chars)
    spec = SYNTH.format(input=root / "input", run=root / "run", extra=SCORE if score else "")
    (root / "pipeline.yaml").write_text(spec)
    assert main(["run", str(root / "pipeline.yaml"), "--quiet"]) == 0
    return root / "run"


def demo_run(root: Path, docs: int) -> Path:
    from hub_fixtures import build_run

    return build_run(root, docs)


def _mb(tree: Path) -> float:
    return sum(p.stat().st_size for p in tree.rglob("*") if p.is_file()) / 1e6


def bench_publish(run: Path, root: Path, shard_mb: int) -> dict:
    from hub_server import HubServer
    from huggingface_hub import HfApi

    from winnow.hub import CardOptions, plan_publish, push_tree, stage_and_verify

    plan = plan_publish(run, "bench/run", shard_bytes=shard_mb * 1024 * 1024)
    tree = root / "tree"
    t0 = time.perf_counter()
    stage_and_verify(plan, tree, CardOptions(license="odc-by"))
    staged = time.perf_counter() - t0
    size = _mb(tree)
    files = sum(1 for p in tree.rglob("*") if p.is_file())
    with HubServer(root / "server-a", max_seconds=3600) as hub:
        t0 = time.perf_counter()
        result = push_tree(tree, "bench/run", endpoint=hub.endpoint, log=lambda _: None)
        pushed = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = push_tree(tree, "bench/run", endpoint=hub.endpoint, log=lambda _: None)
        repush = time.perf_counter() - t0
    with HubServer(root / "server-b", max_seconds=3600) as hub:
        api = HfApi(endpoint=hub.endpoint)
        t0 = time.perf_counter()
        api.create_repo("bench/peer", repo_type="dataset", private=True)
        api.upload_folder(folder_path=tree, repo_id="bench/peer", repo_type="dataset")
        peer = time.perf_counter() - t0
    return {
        "run_mb": _mb(run),
        "tree_mb": size,
        "files": files,
        "stage_verify_s": staged,
        "push_s": pushed,
        "push_mb_s": size / pushed,
        "commits": len(result.commits),
        "republish_s": repush,
        "republish_commits": len(again.commits),
        "peer_upload_folder_s": peer,
        "peer_mb_s": size / peer,
        "ratio_vs_peer": peer / pushed,
    }


PANDAS_PEER = """
import sys, glob, numpy as np, pyarrow as pa, pyarrow.ipc as ipc, time, resource
t = time.perf_counter()
run = sys.argv[1]
files = sorted(glob.glob(run + "/data/*.arrow") + glob.glob(run + "/rejected/*/*.arrow"))
frames = [ipc.open_file(pa.memory_map(f)).read_all().to_pandas() for f in files]
for df in frames:
    for col in df.columns:
        if df[col].dtype.kind in "if":
            v = df[col].to_numpy(dtype=float); v = v[np.isfinite(v)]
            if v.size: np.histogram(v, bins=40)
    if "text" in df: np.histogram(df["text"].str.len().to_numpy(), bins=40)
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
WINNOW_STATS = """
import sys, time, resource
t = time.perf_counter()
from winnow.html_report.stats import collect
collect(sys.argv[1])
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
WINNOW_REPORT = """
import sys, time, resource
t = time.perf_counter()
from winnow.html_report import write_report
write_report(sys.argv[1], sys.argv[2])
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def _timed(script: str, *args) -> tuple[float, float]:
    out = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)], check=True, capture_output=True
    )
    wall, rss = out.stdout.decode().split()[-2:]
    return float(wall), float(rss)


def bench_report(run: Path, root: Path) -> dict:
    report_s, report_rss = _timed(WINNOW_REPORT, run, root / "report.html")
    stats_s, stats_rss = _timed(WINNOW_STATS, run)
    peer_s, peer_rss = _timed(PANDAS_PEER, run)
    ledger = json.loads((run / "ledger.json").read_text())
    return {
        "rows": ledger["input_rows"],
        "run_mb": _mb(run),
        "report_s": report_s,
        "report_rss_mib": report_rss,
        "stats_s": stats_s,
        "stats_rss_mib": stats_rss,
        "pandas_peer_s": peer_s,
        "pandas_peer_rss_mib": peer_rss,
        "stats_speedup_vs_pandas": peer_s / stats_s,
        "html_kb": (root / "report.html").stat().st_size / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["publish", "report"])
    parser.add_argument("--docs", type=int, default=4000, help="demo corpus size (publish)")
    parser.add_argument("--gb", type=float, help="synthetic run of about this size (publish)")
    parser.add_argument("--rows", type=int, default=1_000_000, help="synthetic rows (report)")
    parser.add_argument("--shard-mb", type=int, default=500)
    parser.add_argument("--run", type=Path, help="use an existing run directory")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="winnow-bench-publish-"))
    try:
        t0 = time.perf_counter()
        if args.run:
            run = args.run
        elif args.what == "report":
            run = synth_run(root / "src", args.rows, 300, score=True)
        elif args.gb:
            run = synth_run(root / "src", int(args.gb * 1e9 / 1100), 1000, score=False)
        else:
            run = demo_run(root / "src", args.docs)
        print(f"run built in {time.perf_counter() - t0:.1f} s: {run}", file=sys.stderr)
        if args.what == "publish":
            result = bench_publish(run, root, args.shard_mb)
        else:
            result = bench_report(run, root)
        print(json.dumps(result, indent=2))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
