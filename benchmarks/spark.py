"""Spark runner overhead and MinHash dedup on Spark, against the local runner.

One synthetic corpus (random-word documents plus exact copies and one-word-changed
near copies), one pipeline (normalize -> exact_dedup -> minhash_dedup), run by the
local runner and by the Spark runner on ``local[N]`` in this process, one after the
other. Both runs must give the same ledger (checked). Spark session start-up is
timed separately and not counted in the Spark run.

    python benchmarks/spark.py                      # 20k docs, local vs Spark local[2]
    python benchmarks/spark.py --docs 200000
    python benchmarks/spark.py --docs 1000000 --skip-local
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import shutil
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from winnow.pipeline import parse_pipeline

_LETTERS = random.Random(1)
# Letters only: the MinHash normalisation drops digits, so "w1" and "w2" would be one word.
VOCAB = ["".join(_LETTERS.choices("abcdefghijklmnopqrstuvwxyz", k=6)) for _ in range(5000)]


def make_corpus(folder: Path, docs: int, files: int = 8, seed: int = 0) -> int:
    """``docs`` documents of 30-120 words: ~90% unique, 5% exact and 5% near copies."""
    rng = random.Random(seed)
    base = int(docs * 0.9)
    texts = [" ".join(rng.choices(VOCAB, k=rng.randrange(30, 120))) for _ in range(base)]
    for j in range(docs - base):
        words = texts[rng.randrange(base)].split()
        if j % 2:
            words[rng.randrange(len(words))] = "changed"
        texts.append(" ".join(words))
    order = list(range(docs))
    rng.shuffle(order)
    folder.mkdir(parents=True)
    per_file = -(-docs // files)
    nbytes = 0
    for f in range(files):
        rows = order[f * per_file : (f + 1) * per_file]
        table = pa.table({"id": [f"d{i:08d}" for i in rows], "text": [texts[i] for i in rows]})
        nbytes += table.nbytes
        pq.write_table(table, folder / f"part-{f:02d}.parquet")
    return nbytes


def pipeline(root: Path, out: str, chunk_rows: int, workers: int):
    return parse_pipeline(
        {
            "name": "spark-bench",
            "input": {"path": str(root / "in"), "id_field": "id"},
            "output": {"dir": str(root / out), "format": "arrow"},
            "runner": {"workers": workers, "chunk_rows": chunk_rows, "progress": False},
            "stages": [
                {"id": "norm", "use": "normalize"},
                {"id": "exact", "use": "exact_dedup"},
                {"id": "near", "use": "minhash_dedup"},
            ],
        }
    )


def time_global_stages(executor_cls, times: dict[str, float]) -> None:
    """Record each global stage's wall time (its decide and write) into ``times``."""
    inner = executor_cls.run_global

    def timed(self, stage, *args):
        start = time.perf_counter()
        try:
            return inner(self, stage, *args)
        finally:
            times.setdefault(stage.stage_id, time.perf_counter() - start)  # outermost call

    executor_cls.run_global = timed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=20000)
    parser.add_argument("--cores", type=int, default=2, help="local runner workers, local[N]")
    parser.add_argument("--chunk-rows", type=int, default=25000)
    parser.add_argument("--skip-local", action="store_true", help="Spark run only")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()

    from winnow.runners.local import LocalExecutor, run_pipeline
    from winnow.spark.executor import SparkExecutor, SparkRunner
    from winnow.spark.session import get_session

    local_t: dict[str, float] = {}
    spark_t: dict[str, float] = {}

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("winnow.spark").setLevel(logging.INFO)  # fallbacks, CC rounds
    root = Path(tempfile.mkdtemp(prefix="winnow-spark-bench-"))
    nbytes = make_corpus(root / "in", args.docs)
    print(f"docs={args.docs} input={nbytes / 2**20:.0f} MiB cores={args.cores}")

    local_s = None
    if not args.skip_local:
        start = time.perf_counter()
        spec = pipeline(root, "local", args.chunk_rows, args.cores)
        time_global_stages(LocalExecutor, local_t)
        local = run_pipeline(spec, workers=args.cores, progress=False)
        local_s = time.perf_counter() - start
        print(f"local runner ({args.cores} workers): {local_s:8.2f} s  {_fmt(local_t)}")

    start = time.perf_counter()
    spark = get_session(
        f"local[{args.cores}]",
        app_name="winnow-bench",
        conf={
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
            "spark.sql.shuffle.partitions": str(4 * args.cores),
            "spark.driver.memory": "4g",
        },
    )
    spark.sparkContext.setLogLevel("ERROR")
    print(f"Spark session start-up:   {time.perf_counter() - start:8.2f} s (not counted)")
    start = time.perf_counter()
    time_global_stages(SparkExecutor, spark_t)
    ledger = SparkRunner(pipeline(root, "spark", args.chunk_rows, args.cores), spark).run()
    spark_s = time.perf_counter() - start
    print(f"Spark runner (local[{args.cores}]): {spark_s:8.2f} s  {_fmt(spark_t)}")
    stages = ledger.to_json()["stages"]
    for sid in ("exact", "near"):
        print(f"  {sid}: rejected {stages[sid]['rejected']} stats {stages[sid]['stats']}")
    if local_s is not None:
        same = json.dumps(ledger.to_json()) == json.dumps(local.to_json())
        print(f"overhead Spark / local:   {spark_s / local_s:8.2f}x  (same ledger: {same})")
        if not same:
            raise SystemExit("ledgers differ")
    spark.stop()
    if not args.keep:
        shutil.rmtree(root)


def _fmt(times: dict[str, float]) -> str:
    return "(" + ", ".join(f"{sid} {t:.2f} s" for sid, t in times.items()) + ")"


if __name__ == "__main__":
    main()
