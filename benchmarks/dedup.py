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
    ap.add_argument("--engine", default="numba", help=argparse.SUPPRESS)  # internal
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


def python_words():
    """A fast Python twin of winnow's word normaliser (``str.translate``), for the peers."""
    import re
    import unicodedata

    table = {
        c: " "
        for c in range(sys.maxunicode + 1)
        if unicodedata.category(chr(c))[0] in "PS" or unicodedata.category(chr(c)) == "Cc"
    }
    digits = re.compile(r"\d+(?:[.,،٫⎖⎗⎘]\d+)?")

    def words(text: str) -> list[str]:
        text = digits.sub("0", text.lower()).translate(table)
        if not text.isascii():
            nfd = unicodedata.normalize("NFD", text)
            text = "".join(c for c in nfd if unicodedata.category(c) != "Mn")
        return text.split()

    return words


def shingle_lists(texts: list[str]) -> list[list[bytes]]:
    words = python_words()
    out = []
    for text in texts:
        w = words(text)
        out.append(
            [" ".join(w[i : i + 5]).encode() for i in range(max(1, len(w) - 4))] if w else []
        )
    return out


def datasketch_signatures(texts: list[str]):
    from datasketch import MinHash

    perms = MinHash(num_perm=112, seed=1).permutations

    def run():
        out = []
        for shingles in shingle_lists(texts):
            m = MinHash(num_perm=112, seed=1, permutations=perms, scheme="affine32")
            m.update_batch(shingles)
            out.append(m.hashvalues)
        return out

    return run


def bench_signatures(args, pool) -> dict:
    """Docs per CPU-second for each implementation, text -> signatures and the
    signature step alone (given the same 64-bit shingle hashes)."""
    import tempfile

    import rensa
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature

    from winnow.kernels.minhash import MinHasher, compiled_signatures, signatures

    rows = corpus(args.sig_docs, pool, args.doc_bytes, 0.0, seed=99)
    texts = [r["text"] for r in rows]
    arrow = pa.array(texts)
    compiled, reference = (MinHasher(num_perm=112, seed=1, engine=e) for e in ("numba", "numpy"))
    compiled.signatures(arrow.slice(0, 100))  # compile / warm caches
    reference.signatures(arrow.slice(0, 100))

    def cpu(fn, rounds=3):
        best = float("inf")
        for _ in range(rounds):
            start = time.process_time()
            fn()
            best = min(best, time.process_time() - start)
        return best

    def batches(hasher):
        return lambda: [hasher.signatures(arrow.slice(s, 8192)) for s in range(0, len(arrow), 8192)]

    hashes, offsets = reference.shingle_hashes(arrow)
    perms = reference.perms
    uoffsets = offsets.astype(np.uint64)
    assert np.array_equal(
        compiled_signatures(hashes, offsets, perms), signatures(hashes, offsets, perms)
    )
    sub = texts[: args.datatrove_docs]
    step = MinhashDedupSignature(tempfile.mkdtemp(), MinhashConfig())
    step.get_shingles(sub[0])  # loads the word tokenizer

    def dt_run():
        for text in sub:
            shingles = step.get_shingles(text)
            if shingles.size:
                step.get_signature(shingles)

    def rensa_text():
        sets = shingle_lists(texts)
        rensa.RMinHash.digest_matrix_from_token_sets(sets, num_perm=112, seed=1)

    ds_run = datasketch_signatures(texts)
    start = time.process_time()
    ds_sigs = ds_run()
    t_ds = time.process_time() - start
    # Same shingles: datasketch equals winnow's sha1 mode bit for bit.
    same, _ = MinHasher(num_perm=112, seed=1, hash="sha1").signatures(arrow.slice(0, 50))
    assert np.array_equal(np.array(ds_sigs[:50]), same), "datasketch shingles differ"
    n = len(texts)
    text_rows = {
        "winnow `MinHasher`, compiled (`engine: numba`, the default)": n / cpu(batches(compiled)),
        "winnow `MinHasher`, numpy reference (`engine: numpy`; the code before)": n
        / cpu(batches(reference)),
        "rensa 0.5 `RMinHash.digest_matrix_from_token_sets` + Python shingling": n
        / cpu(rensa_text, 1),
        "datasketch `MinHash.update_batch` + Python shingling": n / t_ds,
        f"datatrove `MinhashDedupSignature` ({len(sub)} docs)": len(sub) / cpu(dt_run, 1),
    }
    kernel_rows = {
        "winnow `compiled_signatures`": n
        / cpu(lambda: compiled_signatures(hashes, offsets, perms)),
        "winnow `signatures` (numpy)": n / cpu(lambda: signatures(hashes, offsets, perms)),
        "rensa 0.5 `RMinHash.digest_matrix_from_flat_token_hashes`": n
        / cpu(
            lambda: rensa.RMinHash.digest_matrix_from_flat_token_hashes(
                hashes, uoffsets, num_perm=112, seed=1
            )
        ),
    }
    return {
        "docs": n,
        "mean_bytes": float(np.mean([len(t.encode()) for t in texts])),
        "mean_shingles": float(np.mean(np.diff(offsets))),
        "text": text_rows,
        "kernel": kernel_rows,
    }


# ---------------------------------------------------------------------- end to end


def e2e_child(directory: str, verify: str, engine: str) -> None:
    """Run minhash_dedup over the IPC files in ``directory``; print JSON figures and a
    digest of the decisions. ``engine: numpy`` hides numba from the MinHash kernel, so
    the stage runs the numpy reference path (the code before the compiled one)."""
    import hashlib

    from winnow.kernels import minhash_jit
    from winnow.stages.base import Materialized
    from winnow.stages.minhash_dedup import MinhashDedup

    minhash_jit.AVAILABLE = engine == "numba"
    digest = hashlib.sha256()

    files = sorted(Path(directory).glob("part-*.arrow"))
    with pa.memory_map(str(files[0])) as source:
        schema = pa.ipc.open_file(source).schema
    data = Materialized(files, schema)
    stage = MinhashDedup(MinhashDedup.Params(verify=verify), stage_id="dedup", seed=0)
    start, cpu = time.perf_counter(), time.process_time()
    kept = rejected = 0
    stats: dict[str, float] = {}
    for out in stage.run(data, Path(directory) / f"work-{engine}"):
        kept += out.kept.num_rows
        rejected += out.rejected.num_rows
        for column in (out.kept["id"], out.rejected["id"], out.rejected["reason"]):
            digest.update("\n".join(column.to_pylist()).encode() + b"\0")
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
                "decisions_sha256": digest.hexdigest(),
                **stats,
            }
        )
    )


def bench_e2e(args, pool) -> dict:
    """The stage end to end, compiled and numpy MinHash on the same files."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        write_corpus(Path(tmp), args.e2e_docs, pool, args.doc_bytes, args.dup_share)
        made = time.perf_counter() - start
        res = {}
        for engine in ("numba", "numpy"):
            cmd = [sys.executable, __file__, "--e2e-run", tmp, "--verify", args.verify]
            cmd += ["--engine", engine]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            res[engine] = json.loads(out.strip().splitlines()[-1])
            res[engine]["corpus_gen_s"] = made
            res[engine]["verify"] = args.verify
        same = res["numba"]["decisions_sha256"] == res["numpy"]["decisions_sha256"]
        assert same, "engines decided differently"
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
    from winnow.stages.minhash_dedup import MinhashDedup

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
        e2e_child(args.e2e_run, args.verify, args.engine)
        return
    t0 = time.perf_counter()
    pool = line_pool(args.pool)
    print(f"pool: {len(pool)} lines from {args.pool} docstrings ({time.perf_counter() - t0:.1f}s)")
    if "sig" not in args.skip:
        r = bench_signatures(args, pool)
        print(
            f"signatures: {r['docs']} docs, {r['mean_bytes']:.0f} B, {r['mean_shingles']:.0f} "
            "shingles/doc, 112 permutations, one thread"
        )
        for part, title in (("text", "text -> signatures"), ("kernel", "signature step alone")):
            first = next(iter(r[part].values()))
            print(f"\n| {title} | docs per CPU-s | winnow compiled / it |\n|---|---:|---:|")
            for name, rate in r[part].items():
                print(f"| {name} | {rate:,.0f} | {first / rate:.2f}x |")
    if "e2e" not in args.skip:
        both = bench_e2e(args, pool)
        for engine, r in both.items():
            print(
                f"end-to-end minhash_dedup (verify={r['verify']}, MinHash {engine}): {r['docs']} "
                f"docs in {r['wall_s']:.1f}s wall ({r['docs_per_s']:.0f} docs/s, "
                f"{r['cpu_s']:.1f} CPU-s), peak RSS {r['peak_rss_gib']:.2f} GiB, rejected "
                f"{r['rejected']}, candidate edges {r.get('candidate_edges', 0):.0f}"
            )
        ratio = both["numpy"]["cpu_s"] / both["numba"]["cpu_s"]
        print(f"compiled / numpy: {ratio:.2f}x per CPU-second, identical decisions")
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
