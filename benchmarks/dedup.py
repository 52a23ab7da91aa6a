"""Near-dedup benchmarks: signature throughput against datasketch and datatrove,
end-to-end ``minhash_dedup`` wall time and peak memory, and quality against brute force.

Documents are ~``--doc-bytes`` of real English (lines of stdlib docstrings drawn at
random), and a share of them are copies edited at 1-30% of words (substitutions and
deletions). Every side signs the same documents with 5-word shingles and 112
permutations (14 bands x 8 rows) on one thread; throughput is docs per CPU-second
of this process (per core). datasketch gets the same normalised words from a fast
Python normaliser (``str.translate``), its default sha1 hash and ``update_batch``;
datatrove runs ``MinhashDedupSignature``'s own shingling and signature code.

    python benchmarks/dedup.py                                   # smoke size
    python benchmarks/dedup.py --sig-docs 5000 --e2e-docs 100000 --quality-docs 3000
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pool", type=int, default=1500, help="real docstrings to draw lines from")
    ap.add_argument("--doc-bytes", type=int, default=2000, help="target document size")
    ap.add_argument("--sig-docs", type=int, default=1000, help="docs for signature throughput")
    ap.add_argument("--datatrove-docs", type=int, default=200, help="docs for datatrove (slow)")
    ap.add_argument("--e2e-docs", type=int, default=5000, help="docs for end-to-end dedup")
    ap.add_argument("--dup-share", type=float, default=0.1, help="share of edited copies")
    ap.add_argument("--verify", default="none", help="verify mode of the end-to-end run")
    ap.add_argument("--quality-docs", type=int, default=600, help="docs for brute-force quality")
    ap.add_argument("--skip", nargs="*", default=[], help="parts to skip: sig e2e quality")
    ap.add_argument("--e2e-run", help=argparse.SUPPRESS)  # internal: run the stage on a dir
    return ap.parse_args()


# ------------------------------------------------------------------------- corpus


def line_pool(n: int) -> list[str]:
    from winnow.sample_text import real_documents

    lines = [ln.strip() for d in real_documents(n) for ln in d["text"].splitlines()]
    return [ln for ln in lines if len(ln) > 20]


def edit(text: str, rate: float, rng: random.Random) -> str:
    """Delete or substitute each word with probability ``rate / 2`` each."""
    out = []
    for word in text.split():
        r = rng.random()
        if r >= rate / 2:
            out.append(f"w{rng.randrange(10**9)}" if r < rate else word)
    return " ".join(out)


def corpus(n: int, pool: list[str], doc_bytes: int, dup_share: float, seed: int):
    """``n`` rows ``{id, text}``: random line mixes plus edited copies of earlier rows."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        if rows and rng.random() < dup_share:
            src = rows[rng.randrange(len(rows))]["text"]
            text = edit(src, rng.uniform(0.01, 0.3), rng)
        else:
            parts, size = [], 0
            while size < doc_bytes:
                parts.append(pool[rng.randrange(len(pool))])
                size += len(parts[-1]) + 1
            text = "\n".join(parts)
        rows.append({"id": f"doc-{seed}-{i:08d}", "text": text})
    return rows


def write_corpus(path: Path, n: int, pool, doc_bytes, dup_share, rows_per_file=50_000):
    """Write the corpus as Arrow IPC files (generated in slices to bound memory)."""
    path.mkdir(parents=True, exist_ok=True)
    files = []
    for k, start in enumerate(range(0, n, rows_per_file)):
        rows = corpus(min(rows_per_file, n - start), pool, doc_bytes, dup_share, seed=k)
        table = pa.Table.from_pylist(rows)
        files.append(path / f"part-{k:05d}.arrow")
        with pa.ipc.new_file(str(files[-1]), table.schema) as writer:
            writer.write_table(table)
    return files


# -------------------------------------------------------------------- signatures


def datasketch_signatures(texts: list[str]) -> list[np.ndarray]:
    import re
    import unicodedata

    from datasketch import MinHash

    table = {
        c: " "
        for c in range(sys.maxunicode + 1)
        if unicodedata.category(chr(c))[0] in "PS" or unicodedata.category(chr(c)) == "Cc"
    }
    digits = re.compile(r"\d+(?:[.,،٫⎖⎗⎘]\d+)?")
    perms = MinHash(num_perm=112, seed=1).permutations

    def words(text: str) -> list[str]:
        text = digits.sub("0", text.lower()).translate(table)
        if not text.isascii():
            nfd = unicodedata.normalize("NFD", text)
            text = "".join(c for c in nfd if unicodedata.category(c) != "Mn")
        return text.split()

    def run():
        out = []
        for text in texts:
            w = words(text)
            shingles = [" ".join(w[i : i + 5]) for i in range(max(1, len(w) - 4))] if w else []
            m = MinHash(num_perm=112, seed=1, permutations=perms, scheme="affine32")
            m.update_batch([s.encode() for s in shingles])
            out.append(m.hashvalues)
        return out

    return run


def bench_signatures(args, pool) -> dict:
    import tempfile

    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature

    from winnow.kernels.minhash import MinHasher

    rows = corpus(args.sig_docs, pool, args.doc_bytes, 0.0, seed=99)
    texts = [r["text"] for r in rows]
    arrow = pa.array(texts)
    hasher = MinHasher(num_perm=112, seed=1)
    hasher.signatures(arrow.slice(0, 100))  # warm caches

    def cpu(fn, *a):
        start = time.process_time()
        fn(*a)
        return time.process_time() - start

    def winnow_run():
        for s in range(0, len(arrow), 8192):
            hasher.signatures(arrow.slice(s, 8192))

    ds_run = datasketch_signatures(texts)
    t_w = min(cpu(winnow_run) for _ in range(3))
    start = time.process_time()
    ds_sigs = ds_run()
    t_ds = time.process_time() - start
    # Same shingles: datasketch equals winnow's sha1 mode bit for bit.
    same, _ = MinHasher(num_perm=112, seed=1, hash="sha1").signatures(arrow.slice(0, 50))
    assert np.array_equal(np.array(ds_sigs[:50]), same), "datasketch shingles differ"
    step = MinhashDedupSignature(tempfile.mkdtemp(), MinhashConfig())
    sub = texts[: args.datatrove_docs]

    def dt_run():
        for text in sub:
            shingles = step.get_shingles(text)
            if shingles.size:
                step.get_signature(shingles)

    step.get_shingles(sub[0])  # loads the word tokenizer
    t_dt = cpu(dt_run)
    shingles = hasher.shingle_strings(arrow)
    per_doc = np.mean([len(s) for s in shingles])
    res = {
        "docs": len(texts),
        "mean_bytes": float(np.mean([len(t.encode()) for t in texts])),
        "mean_shingles": float(per_doc),
        "winnow_docs_per_cpu_s": len(texts) / t_w,
        "datasketch_docs_per_cpu_s": len(texts) / t_ds,
        "datatrove_docs_per_cpu_s": len(sub) / t_dt,
    }
    res["x_datasketch"] = res["winnow_docs_per_cpu_s"] / res["datasketch_docs_per_cpu_s"]
    res["x_datatrove"] = res["winnow_docs_per_cpu_s"] / res["datatrove_docs_per_cpu_s"]
    return res


# ---------------------------------------------------------------------- end to end


def e2e_child(directory: str, verify: str) -> None:
    """Run minhash_dedup over the IPC files in ``directory``; print JSON figures."""
    from winnow.stages.base import Materialized
    from winnow.stages.dedup import MinhashDedup

    files = sorted(Path(directory).glob("part-*.arrow"))
    with pa.memory_map(str(files[0])) as source:
        schema = pa.ipc.open_file(source).schema
    data = Materialized(files, schema)
    stage = MinhashDedup(MinhashDedup.Params(verify=verify), stage_id="dedup", seed=0)
    start, cpu = time.perf_counter(), time.process_time()
    kept = rejected = 0
    stats: dict[str, float] = {}
    for out in stage.run(data, Path(directory) / "work"):
        kept += out.kept.num_rows
        rejected += out.rejected.num_rows
        for k, v in out.stats.items():
            stats[k] = stats.get(k, 0) + v
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    print(
        json.dumps(
            {
                "docs": kept + rejected,
                "kept": kept,
                "rejected": rejected,
                "wall_s": wall,
                "cpu_s": time.process_time() - cpu,
                "docs_per_s": (kept + rejected) / wall,
                "peak_rss_gib": peak,
                **stats,
            }
        )
    )


def bench_e2e(args, pool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        write_corpus(Path(tmp), args.e2e_docs, pool, args.doc_bytes, args.dup_share)
        made = time.perf_counter() - start
        cmd = [sys.executable, __file__, "--e2e-run", tmp, "--verify", args.verify]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        res = json.loads(out.strip().splitlines()[-1])
        res["corpus_gen_s"] = made
        res["verify"] = args.verify
        return res


# ------------------------------------------------------------------------ quality


def brute_force_pairs(texts: list[str], at: float):
    """Exact Jaccard of shingle-string sets (the Python twin) for every pair sharing a
    shingle: ``(jaccard(i, j) function, set of pairs i < j at >= at)``."""
    from scipy import sparse

    from winnow.kernels.minhash import shingles_py

    sets = [set(shingles_py(t)) for t in texts]
    vocab: dict[str, int] = {}
    doc = [i for i, s in enumerate(sets) for _ in s]
    col = [vocab.setdefault(x, len(vocab)) for s in sets for x in s]
    inc = sparse.csr_matrix((np.ones(len(col)), (doc, col)))
    inter = sparse.triu(inc @ inc.T, k=1).tocoo()
    size = np.array([len(s) for s in sets])
    jac = inter.data / (size[inter.row] + size[inter.col] - inter.data)
    lookup = dict(zip(zip(inter.row.tolist(), inter.col.tolist(), strict=True), jac.tolist(),
                      strict=True))  # fmt: skip

    def jaccard(i: int, j: int) -> float:
        return 1.0 if i == j else lookup.get((min(i, j), max(i, j)), 0.0)

    close = {(i, j) for (i, j), v in lookup.items() if v >= at}
    return jaccard, close


def bench_quality(args, pool) -> dict:
    """Removal precision: share of removed docs whose kept doc has true Jaccard >= 0.8.
    Pair recall: share of true pairs (Jaccard >= 0.8) of which at least one doc was
    removed. Cluster precision/recall: the same pairs against co-membership."""
    from winnow.stages.base import Materialized
    from winnow.stages.dedup import MinhashDedup

    rows = corpus(args.quality_docs, pool, args.doc_bytes, 0.4, seed=5)
    jaccard, truth = brute_force_pairs([r["text"] for r in rows], 0.8)
    res = {"docs": len(rows), "true_pairs": len(truth)}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "q.arrow"
        table = pa.Table.from_pylist(rows)
        with pa.ipc.new_file(str(path), table.schema) as writer:
            writer.write_table(table)
        data = Materialized([path], table.schema)
        index = {r["id"]: i for i, r in enumerate(rows)}
        for verify in ("none", "jaccard", "signature"):
            stage = MinhashDedup(MinhashDedup.Params(verify=verify), stage_id="q", seed=0)
            kept_of = np.arange(len(rows))
            for out in stage.run(data, Path(tmp) / verify):
                reasons = out.rejected["reason"].to_pylist()
                for i, reason in zip(out.rejected["id"].to_pylist(), reasons, strict=True):
                    kept_of[index[i]] = index[reason.removeprefix("near_duplicate_of:")]
            removed = np.flatnonzero(kept_of != np.arange(len(rows)))
            good = sum(jaccard(i, kept_of[i]) >= 0.8 for i in removed)
            precision = good / max(len(removed), 1)
            recall = sum(kept_of[i] != i or kept_of[j] != j for i, j in truth) / max(len(truth), 1)
            groups: dict[int, list[int]] = {}
            for i, k in enumerate(kept_of):
                groups.setdefault(int(k), []).append(i)
            co = {(a, b) for g in groups.values() for a in g for b in g if a < b}
            res[verify] = {
                "removed": len(removed),
                "precision": precision,
                "recall": recall,
                "f1": 2 * precision * recall / max(precision + recall, 1e-12),
                "cluster_precision": len(co & truth) / max(len(co), 1),
                "cluster_recall": len(co & truth) / max(len(truth), 1),
            }
    return res


def main() -> None:
    args = parse_args()
    if args.e2e_run:
        e2e_child(args.e2e_run, args.verify)
        return
    t0 = time.perf_counter()
    pool = line_pool(args.pool)
    print(f"pool: {len(pool)} lines from {args.pool} docstrings ({time.perf_counter() - t0:.1f}s)")
    if "sig" not in args.skip:
        r = bench_signatures(args, pool)
        print(
            f"signatures: {r['docs']} docs, {r['mean_bytes']:.0f} B, {r['mean_shingles']:.0f} "
            f"shingles/doc | docs per CPU-second: winnow {r['winnow_docs_per_cpu_s']:.0f}, "
            f"datasketch {r['datasketch_docs_per_cpu_s']:.0f}, datatrove "
            f"{r['datatrove_docs_per_cpu_s']:.0f} | winnow/datasketch {r['x_datasketch']:.1f}x, "
            f"winnow/datatrove {r['x_datatrove']:.1f}x"
        )
    if "e2e" not in args.skip:
        r = bench_e2e(args, pool)
        print(
            f"end-to-end minhash_dedup (verify={r['verify']}): {r['docs']} docs in "
            f"{r['wall_s']:.1f}s wall ({r['docs_per_s']:.0f} docs/s, {r['cpu_s']:.1f} CPU-s), "
            f"peak RSS {r['peak_rss_gib']:.2f} GiB, rejected {r['rejected']}, "
            f"candidate edges {r.get('candidate_edges', 0):.0f}"
        )
    if "quality" not in args.skip:
        r = bench_quality(args, pool)
        print(f"quality: {r['docs']} docs, {r['true_pairs']} pairs with Jaccard >= 0.8")
        for verify in ("none", "jaccard", "signature"):
            q = r[verify]
            print(
                f"  verify={verify:9s} removed {q['removed']}: precision {q['precision']:.4f} "
                f"recall {q['recall']:.4f} F1 {q['f1']:.4f} | cluster pairs: precision "
                f"{q['cluster_precision']:.4f} recall {q['cluster_recall']:.4f}"
            )


if __name__ == "__main__":
    main()
