"""Does targeted selection help a proxy model on the target domain? (issue 15)

    python benchmarks/skills_ablation.py build    # pool, reference, eval sets; curation
    python benchmarks/skills_ablation.py train    # 4 selections x 5 seeds; the verdict

``build`` writes the pool of ``benchmarks/skills.py`` (stdlib docstrings, a hidden
target area at 10%, 150 other target docstrings as the reference) as JSONL rows with
a ``split``: ``pool``; ``target_eval`` (the target area's remaining docstrings, in
neither the pool nor the reference); ``general_eval`` (a tenth of the non-target
docstrings, by a hash of the id, taken out of the pool). It fits a 1024-token BPE on
all of it and runs ``pipelines/skills_select.yaml``: embed_sim, skills and dsir
score the pool, and four selections of 30% of its tokens (random, DSIR, kNN, skills)
become length buckets, as do the two evaluation sets. ``train`` runs
``pipelines/skills_ablation.yaml`` (tiny proxies, equal tokens) and prints, per
variant, the mean bpb on each evaluation set with its 95% t-interval, and whether
each targeted variant beats random on the target domain with non-overlapping
intervals.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from skills import TARGET, corpus  # noqa: E402  (puts tests/ on the path)
from skills_corpus import docstrings  # noqa: E402

from winnow.hashing import to_unit  # noqa: E402

PIPELINES = ROOT / "pipelines"
TARGETED = ("dsir", "knn", "skills")
TOKENIZE_STAGES = ("tokenize", "tokenize_target", "tokenize_general")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def split_rows(pool: list[dict], target_left: list[dict]) -> list[dict]:
    """The pool minus a tenth of its non-target rows (general_eval), plus target_eval."""
    import xxhash

    rows = []
    for r in pool:
        general = r["area"] != TARGET and to_unit(xxhash.xxh64_intdigest(r["id"])) < 0.1
        rows.append({**r, "split": "general_eval" if general else "pool"})
    return rows + [{**r, "split": "target_eval"} for r in target_left]


def build(out: Path) -> None:
    from winnow.demo import train_demo_tokenizer
    from winnow.pipeline import load_pipeline
    from winnow.runners.local import run_pipeline

    t0 = time.time()
    args = argparse.Namespace(target=TARGET, reference=150, target_share=0.1)
    pool, reference, _ = corpus(args)
    used = {r["text"] for r in pool} | set(reference)
    target_left = [r for r in docstrings(TARGET) if r["text"] not in used]
    rows = split_rows(pool, target_left)
    write_jsonl(out / "input" / "docs.jsonl", rows)
    write_jsonl(out / "reference" / "reference.jsonl", [{"text": t} for t in reference])
    tokenizer = str(train_demo_tokenizer(out, vocab=1024))
    spec = load_pipeline(
        PIPELINES / "skills_select.yaml",
        {
            "input.path": str(out / "input"),
            "output.dir": str(out / "run"),
            "stages.sim.params.reference": str(out / "reference"),
            "stages.skills.params.reference": str(out / "reference"),
            "stages.dsir.params.reference": str(out / "reference"),
            **{f"stages.{s}.params.tokenizer": tokenizer for s in TOKENIZE_STAGES},
        },
    )
    run_pipeline(spec, workers=2, progress=False)
    counts = {
        s: sum(r["split"] == s for r in rows) for s in ("pool", "target_eval", "general_eval")
    }
    print(f"rows: {counts}; reference: {len(reference)}")
    target_ids = {r["id"] for r in rows if r["area"] == TARGET and r["split"] == "pool"}
    print("| selection | docs | target share | tokens |")
    print("|---|---|---|---|")
    for name in ("random", *TARGETED):
        folder = out / "run" / f"buckets-{name}"
        ids = set(_doc_ids(folder))
        tokens = json.loads((folder / "manifest.json").read_text())["input_tokens"]
        share = len(ids & target_ids) / len(ids)
        print(f"| {name} | {len(ids)} | {share:.3f} | {tokens} |")
    print(f"build: {time.time() - t0:.0f} s")


def _doc_ids(bucket_dir: Path) -> list[str]:
    from winnow.io.writers import read_table

    return [
        i
        for p in sorted(bucket_dir.glob("len_*/shard_*.arrow"))
        for i in read_table(p).column("doc_id").to_pylist()
    ]


def ablation_overrides(out: Path) -> dict:
    run = out / "run"
    return {
        "out": str(out / "ablation"),
        "variants": {n: str(run / f"buckets-{n}") for n in ("random", *TARGETED)},
        "eval_sets": {"target": str(run / "eval-target"), "general": str(run / "eval-general")},
    }


def train(out: Path, seeds: list[int]) -> None:
    from winnow.trainer.ablate import run_ablation, t_interval

    t0 = time.time()
    overrides = {**ablation_overrides(out), "seeds": seeds}
    results = run_ablation(PIPELINES / "skills_ablation.yaml", overrides)
    runs = {(r["variant"], r["seed"]): r["metrics"] for r in results["runs"]}
    print("| variant | bpb@target | bpb@general | Δ target vs random (paired) |")
    print("|---|---|---|---|")
    intervals = {}
    for v in ("random", *TARGETED):
        cells = []
        for metric in ("bpb@target", "bpb@general"):
            mean, half = t_interval([runs[(v, s)][metric] for s in seeds])
            intervals[(v, metric)] = (mean - half, mean + half)
            cells.append(f"{mean:.4f} ± {half:.4f}")
        d, h = t_interval(
            [runs[(v, s)]["bpb@target"] - runs[("random", s)]["bpb@target"] for s in seeds]
        )
        cells.append("(baseline)" if v == "random" else f"{d:+.4f} ± {h:.4f}")
        print(f"| {v} | " + " | ".join(cells) + " |")
    lo_random = intervals[("random", "bpb@target")][0]
    for v in TARGETED:
        beats = intervals[(v, "bpb@target")][1] < lo_random
        print(f"{v} beats random on the target domain, intervals apart: {'yes' if beats else 'no'}")
    print(f"train: {time.time() - t0:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("phase", choices=("build", "train"))
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "skills_ablation")
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args()
    if args.phase == "build":
        build(args.out)
    else:
        train(args.out, list(range(args.seeds)))


if __name__ == "__main__":
    main()
