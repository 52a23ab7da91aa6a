"""Runner overhead: read -> normalize -> write through winnow vs bare pyarrow.

Both sides read the same Parquet files and write Arrow IPC; winnow additionally
normalises the text (NFC, control characters, whitespace) and keeps its ledger,
markers and manifest. Each side runs in a fresh subprocess so peak RSS is its own.

    python benchmarks/runner_overhead.py --docs 200000
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

BARE = """
import sys, pyarrow as pa, pyarrow.parquet as pq, pathlib
src, dst = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
dst.mkdir(parents=True)
for i, f in enumerate(sorted(src.glob("*.parquet"))):
    t = pq.read_table(f)
    with pa.ipc.new_file(str(dst / f"part-{i}.arrow"), t.schema) as w:
        w.write_table(t)
"""


def make_corpus(folder: Path, docs: int, files: int = 8) -> int:
    """Synthetic documents stitched from real docstrings: ~1.5 KB each."""
    from winnow.sample_text import docstrings

    paragraphs = [p for d in docstrings() for p in d["text"].split("\n\n") if len(p) > 40]
    rng = random.Random(0)
    folder.mkdir(parents=True)
    per_file = -(-docs // files)
    total = 0
    for f in range(files):
        n = min(per_file, docs - f * per_file)
        texts = ["\n\n".join(rng.choices(paragraphs, k=6)) for _ in range(n)]
        ids = [f"doc-{f}-{i}" for i in range(n)]
        table = pa.table({"id": ids, "text": texts})
        total += table.nbytes
        pq.write_table(table, folder / f"part-{f:02d}.parquet", row_group_size=20000)
    return total


MEASURE = """
import resource, subprocess, sys, time
start = time.perf_counter()
subprocess.run(sys.argv[1:], check=True)
wall = time.perf_counter() - start
print(wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
"""


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB, largest single process) of ``cmd`` and its children."""
    out = subprocess.run([sys.executable, "-c", MEASURE, *cmd], check=True, capture_output=True)
    wall, rss = out.stdout.decode().split()[-2:]
    return float(wall), float(rss)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="winnow-bench-"))
    nbytes = make_corpus(root / "in", args.docs)
    spec = {
        "name": "overhead",
        "input": {"path": str(root / "in"), "id_field": "id"},
        "output": {"dir": str(root / "run"), "format": "arrow"},
        "runner": {"workers": args.workers, "chunk_rows": 20000, "progress": False},
        "stages": [{"id": "normalize", "use": "normalize"}],
    }
    (root / "p.yaml").write_text(json.dumps(spec))
    bare_s, bare_rss = timed([sys.executable, "-c", BARE, str(root / "in"), str(root / "bare")])
    cmd = [sys.executable, "-m", "winnow.cli", "run", str(root / "p.yaml"), "--quiet"]
    ours_s, ours_rss = timed(cmd)
    print(f"docs={args.docs} input={nbytes / 2**20:.0f} MiB workers={args.workers}")
    print(f"bare pyarrow read+write : {bare_s:7.2f} s")
    print(f"winnow read+normalize+write: {ours_s:7.2f} s  (incl. interpreter start-up)")
    print(f"ratio winnow / bare      : {ours_s / bare_s:7.2f}x")
    print(f"peak RSS of the largest process: winnow {ours_rss:.0f} MiB, bare {bare_rss:.0f} MiB")
    if not args.keep:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
