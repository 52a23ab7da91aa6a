"""Skill-graph selection benchmarks: embedding throughput against plain
sentence-transformers, selection quality on a pool with a hidden target domain, and
DSIR's fast mode against the data-selection package.

The corpus is the running Python's stdlib docstrings labelled by module area
(``tests/skills_corpus.py``). The pool holds every docstring outside the target area
plus enough target docstrings to make 10% of it; ``--reference`` other target
docstrings are the reference set. Every method scores the pool through its real
stage (``embed_sim``, ``skills`` reusing embed_sim's embeddings, ``dsir``); random
scores by a hash of the id; DSIR runs once per smoothing / normalize pair. Reported
per method: AUC (target vs rest) and precision among the top 10%.

Throughput: both sides embed the same texts on one thread, 256-token windows,
batches of 32; ours (fixed shapes, one window per text) against
``SentenceTransformer.encode`` (sorted by length, padded to each batch's longest).

    python benchmarks/skills.py                      # the figures in RESULTS.md
    python benchmarks/skills.py --throughput-docs 64 --max-tokens 64   # smoke size
    python benchmarks/skills.py --skip embed select  # DSIR only (seconds)
    python benchmarks/skills.py --skip embed select --target "graphical user interfaces"
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from skills_corpus import AREAS, docstrings  # noqa: E402

TARGET = "networking, email and internet protocols"


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", default=TARGET, choices=AREAS, help="hidden target area")
    ap.add_argument("--reference", type=int, default=150, help="reference documents")
    ap.add_argument("--target-share", type=float, default=0.1, help="target share of the pool")
    ap.add_argument("--max-tokens", type=int, default=128, help="window of the selection run")
    ap.add_argument("--throughput-docs", type=int, default=768, help="texts for throughput")
    ap.add_argument("--skip", nargs="*", default=[],
                    help="parts to skip: embed select dsir-select dsir")  # fmt: skip
    return ap.parse_args()


def corpus(args) -> tuple[list[dict], list[str], np.ndarray]:
    """(pool rows, reference texts, is-target mask), deduplicated by text."""
    seen, by_area = set(), {}
    for area in AREAS:
        rows = [r for r in docstrings(area) if r["text"] not in seen]
        seen.update(r["text"] for r in rows)
        by_area[area] = rows
    target = by_area.pop(args.target)
    random.Random(0).shuffle(target)
    others = [r for rows in by_area.values() for r in rows]
    n_target = round(len(others) * args.target_share / (1 - args.target_share))
    if n_target + args.reference > len(target):
        sys.exit(f"only {len(target)} target docstrings; lower --reference or --target-share")
    pool = target[:n_target] + others
    random.Random(1).shuffle(pool)
    reference = [r["text"] for r in target[n_target : n_target + args.reference]]
    return pool, reference, np.array([r["area"] == args.target for r in pool])


def auc(score: np.ndarray, positive: np.ndarray) -> float:
    """Mann-Whitney AUC with ties counted one half."""
    from scipy.stats import rankdata

    ranks = rankdata(score)
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def precision_at(score: np.ndarray, positive: np.ndarray, fraction: float = 0.1) -> float:
    top = np.argsort(-score, kind="stable")[: max(1, round(len(score) * fraction))]
    return float(positive[top].mean())


def bench_embedding(args, texts: list[str]) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    from winnow.skills.embedder import Embedder, resolve_model

    torch.set_num_threads(1)
    texts = texts[: args.throughput_docs]
    ours = Embedder(max_tokens=256, max_chunks=1, batch_size=32)
    plain = SentenceTransformer(resolve_model("minilm")[0], device="cpu")
    plain.max_seq_length = 256
    ours.encode(texts[:32]), plain.encode(texts[:32], batch_size=32)  # warm up
    t0 = time.process_time()
    mine = ours.encode(texts)
    t_ours = time.process_time() - t0
    t0 = time.process_time()
    ref = plain.encode(texts, batch_size=32, normalize_embeddings=True)
    t_plain = time.process_time() - t0
    print(f"embedding, {len(texts)} texts, 256-token windows, 1 thread:")
    print(f"  winnow Embedder      {len(texts) / t_ours:8.1f} docs/CPU-s")
    print(f"  sentence-transformers {len(texts) / t_plain:7.1f} docs/CPU-s")
    print(f"  ratio {t_plain / t_ours:.2f}x; max |diff| {np.abs(mine - ref).max():.2e}")


def stage(cls, run_dir: Path, **params):
    obj = cls(cls.Params(**params), stage_id=cls.name, seed=0, run_dir=run_dir)
    obj.prepare()
    return obj


def bench_selection(args, pool, reference, positive, run_dir: Path) -> None:
    from winnow.hashing import unit_interval

    ref_path = run_dir / "reference.jsonl"
    ref_path.write_text("".join(json.dumps({"text": t}) + "\n" for t in reference))
    table = pa.table({"id": [r["id"] for r in pool], "text": [r["text"] for r in pool]})
    n = len(pool)
    print(f"selection: pool {n} docstrings, {positive.sum()} of them target ({args.target}),")
    print(f"  {len(reference)} reference docstrings; {args.max_tokens}-token windows")
    scores: dict[str, np.ndarray] = {}
    timings: dict[str, float] = {}
    scores["random"] = unit_interval(table.column("id"), seed=0)
    if "select" not in args.skip:
        embedding_methods(args, table, ref_path, run_dir, scores, timings)
    if "dsir-select" not in args.skip:
        dsir_variants(table, ref_path, run_dir, scores)
    print(f"  {'method':28s} {'AUC':>6s} {'P@10%':>6s}")
    for name, score in scores.items():
        print(f"  {name:28s} {auc(score, positive):6.3f} {precision_at(score, positive):6.3f}")
    for name, seconds in timings.items():
        print(f"  time {name}: {seconds:.1f} s")


def embedding_methods(args, table, ref_path, run_dir, scores, timings) -> None:
    from winnow.stages.embed_sim import EmbedSim
    from winnow.stages.skills import Skills

    for mode in ("transformer", "static"):
        embedder = {"mode": mode, "max_tokens": args.max_tokens, "max_chunks": 1}
        embed = stage(EmbedSim, run_dir, reference=str(ref_path), embedder=embedder, k=10,
                      keep_embeddings=True)  # fmt: skip
        t0 = time.perf_counter()  # after prepare: the model is loaded (and distilled)
        sim = embed.process(table).kept
        timings[f"embed_sim, pool embedded ({mode})"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        scorer = stage(Skills, run_dir, reference=str(ref_path), embedder=embedder,
                       embedding_column="embedding")  # fmt: skip
        timings[f"skills graph build ({mode})"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        skills = scorer.process(sim).kept
        timings[f"skills scoring, embeddings reused ({mode})"] = time.perf_counter() - t0
        suffix = "" if mode == "transformer" else " (static)"
        scores["kNN-10" + suffix] = sim.column("knn_score").to_numpy()
        scores["centroid" + suffix] = sim.column("centroid_score").to_numpy()
        scores["skills" + suffix] = skills.column("skill_score").to_numpy()


def dsir_variants(table, ref_path, run_dir, scores) -> None:
    """The package's log weight, and ``dsir_llr`` for each smoothing / normalize pair."""
    from winnow.stages.base import Materialized
    from winnow.stages.dsir import Dsir

    part = run_dir / "pool.arrow"
    with pa.ipc.new_file(str(part), table.schema) as writer:
        writer.write_table(table)
    data = Materialized([part])
    for smoothing, normalize in ((0.0, "none"), (0.0, "mean"), (1.0, "none"), (1.0, "mean")):
        dsir = stage(Dsir, run_dir, reference=str(ref_path), smoothing=smoothing,
                     normalize=normalize)  # fmt: skip
        out = pa.concat_tables([o.kept for o in dsir.run(data, run_dir)])
        if smoothing == 0 and normalize == "none":
            scores["DSIR log weight (package)"] = out.column("dsir_score").to_numpy()
        else:
            label = f"DSIR llr, {'add-one' if smoothing else '1e-8'}, {normalize}"
            scores[label] = out.column("dsir_llr").to_numpy()
    scores["DSIR gumbel (add-one, mean)"] = out.column("dsir_gumbel").to_numpy()


def bench_dsir(pool, reference) -> None:
    from data_selection.hashed_ngram_dsir import HashedNgramDSIR

    from winnow.stages.dsir import HashedNgrams, importance, log_ratio

    texts = [r["text"] for r in pool]
    ours = HashedNgrams("fast", 10_000, 2)
    target, raw = ours.counts(reference), ours.counts(texts)
    log_diffs = np.stack([log_ratio(target, raw), log_ratio(target, raw, 1.0)])  # as the stage
    package = HashedNgramDSIR([], [], cache_dir=tempfile.mkdtemp(), num_proc=1)
    package.log_diff = log_diffs[0]  # the scoring cost does not depend on the values
    ours = HashedNgrams("fast", 10_000, 2)  # cold caches, as in a fresh worker
    t0 = time.process_time()
    importance(ours, log_diffs, texts)
    t_fast = time.process_time() - t0
    t0 = time.process_time()
    for text in texts:
        package.importance_estimator(package.featurizer(text))
    t_package = time.process_time() - t0
    exact = HashedNgrams("exact", 10_000, 2)
    t0 = time.process_time()
    importance(exact, log_diffs, texts)
    t_exact = time.process_time() - t0
    print(f"DSIR featurize + score, {len(texts)} docs, 1 process:")
    print(f"  data-selection package {len(texts) / t_package:9.0f} docs/CPU-s")
    print(f"  winnow exact mode      {len(texts) / t_exact:9.0f} docs/CPU-s")
    print(f"  winnow fast mode       {len(texts) / t_fast:9.0f} docs/CPU-s")
    print(f"  fast / package {t_package / t_fast:.2f}x; exact / package {t_package / t_exact:.2f}x")


def main() -> None:
    args = parse_args()
    pool, reference, positive = corpus(args)
    if "embed" not in args.skip:
        bench_embedding(args, [r["text"] for r in pool])
    if "dsir" not in args.skip:
        bench_dsir(pool, reference)
    if "select" not in args.skip or "dsir-select" not in args.skip:
        with tempfile.TemporaryDirectory() as tmp:
            bench_selection(args, pool, reference, positive, Path(tmp))


if __name__ == "__main__":
    main()
