"""Does the proxy ablation reproduce known curation effects? (issue 16)

    python benchmarks/ablation_fidelity.py build            # corpus, tokenizer, curation run
    python benchmarks/ablation_fidelity.py effects          # dedup, quality, DD at 3 seeds
    python benchmarks/ablation_fidelity.py report           # the tables, per domain; power
    python benchmarks/ablation_fidelity.py scales           # tiny vs mini rank correlation
    python benchmarks/ablation_fidelity.py fit              # winnow fit-weights on it

``build`` writes a labelled real-text corpus (winnow/fidelity_corpus.py), fits a
1024-token byte-level BPE on it, runs ``pipelines/fidelity.yaml`` (raw, dedup-only,
filter-only and curated branches, each as length buckets) and prints how many of
each injected defect the curation caught. ``effects`` runs
``pipelines/fidelity_ablation.yaml`` (the four curation variants in concat-and-chunk
mode and the curated one in bucket mode, paired by seed, scored on the curated
variant's held-out documents and a next-sentence cloze task built from reserved
documents), prints the effects with their paired 95% intervals and writes
``benchmarks/fidelity_result.json`` (``--steps S`` reruns them at another budget,
``--variants`` picks others, e.g. the bucket-mode ``raw,dedup,filtered,curated``).
``report`` reads finished runs back (per domain, and the interval for the first k
seeds and at each budget run; ``power`` alone prints the latter). ``scales`` runs the
curation variants at tiny (reusing ``effects``' runs) and at a wider, deeper ``mini``
proxy (``mini`` runs only that scale, to run beside ``effects``), and prints the rank
agreement. ``fit`` runs ``winnow fit-weights`` (``pipelines/fidelity_fit_weights.yaml``)
on the scored corpus. Everything lands under ``--out`` (default ``runs/fidelity``);
finished runs are reused.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402

from winnow.config import read_yaml  # noqa: E402
from winnow.fidelity_corpus import DOMAINS, build_fidelity_corpus  # noqa: E402

PIPELINES = ROOT / "pipelines"
# the recorded budget: the train config of pipelines/fidelity_ablation.yaml
BASE = read_yaml(PIPELINES / "fidelity_ablation.yaml")["base"]
STEPS = BASE["train"]["steps"]
# effect -> (variant, baseline): the variant is expected to be worse than the baseline.
# The curation effects are measured in concat-and-chunk mode: at this budget a
# long-bucket step holds 4 documents, so bucket mode's seed-to-seed spread is 3-30x
# concat's (benchmarks/RESULTS.md); DD compares the two modes on the curated data.
EFFECTS = {
    "dedup": ("filtered_concat", "curated_concat"),
    "quality": ("dedup_concat", "curated_concat"),
    "both": ("raw_concat", "curated_concat"),
    "DD": ("curated_concat", "curated"),
}
# the same curation effects in bucket mode (``effects --variants raw,dedup,filtered,curated``)
BUCKET_EFFECTS = {
    "dedup (buckets)": ("filtered", "curated"),
    "quality (buckets)": ("dedup", "curated"),
    "both (buckets)": ("raw", "curated"),
}
CURATION = ["raw_concat", "dedup_concat", "filtered_concat", "curated_concat"]
# what ``scales`` ranks: the curation variants and the curated one in buckets (DD); the
# latter is also the variant every run's held-out documents come from (eval_on)
RANKED = [*CURATION, "curated"]


def build(out: Path, per_domain: int) -> None:
    from winnow.demo import train_demo_tokenizer
    from winnow.pipeline import load_pipeline
    from winnow.runners.local import run_pipeline

    t0 = time.time()
    labels = build_fidelity_corpus(out, per_domain=per_domain)
    tokenizer = str(train_demo_tokenizer(out, vocab=1024))
    spec = load_pipeline(
        PIPELINES / "fidelity.yaml",
        {
            "input.path": str(out / "input"),
            "output.dir": str(out / "run"),
            "stages.tokenize.params.tokenizer": tokenizer,
        },
    )
    ledger = run_pipeline(spec, workers=2, progress=False)
    Console().print(ledger.render())
    rejected = {s: _rejected_ids(out / "run", s) for s in _STAGES}
    by_label = Counter(labels.values())
    print("| label | docs | rejected by: " + " | ".join(_STAGES) + " |")
    print("|---|---|" + "---|" * len(_STAGES))
    for label in sorted(by_label):
        ids = {i for i, v in labels.items() if v == label}
        cells = [str(len(ids & rejected[s])) for s in _STAGES]
        print(f"| {label} | {by_label[label]} | " + " | ".join(cells) + " |")
    print(f"build: {time.time() - t0:.0f} s")


_STAGES = ("quality_filter", "exact_dedup", "near_dedup", "curated_filter")


def _rejected_ids(run_dir: Path, stage: str) -> set[str]:
    from winnow.io.writers import read_table

    paths = sorted((run_dir / "rejected" / stage).glob("part-*.arrow"))
    return {i for p in paths for i in read_table(p).column("id").to_pylist()}


def ablation_overrides(root: Path, variants: list[str], **extra) -> dict:
    """The fidelity ablation's ``variants`` (of raw, dedup, filtered, curated in bucket
    mode, each also as ``<name>_concat``) with the paths ``build`` wrote under ``root``."""
    run = root / "run"
    paths = {
        "raw": run / "buckets-raw",
        "dedup": run / "buckets-dedup",
        "filtered": run / "buckets-filtered",
        "curated": run / "buckets",
    }
    every = {name: str(path) for name, path in paths.items()}
    every |= {f"{name}_concat": {"path": str(p), "mode": "concat"} for name, p in paths.items()}
    return {
        "out": str(root / "ablation"),
        "variants": {name: every[name] for name in variants},
        "base.eval.tasks": [str(root / "tasks" / "next_sentence.jsonl")],
        **extra,
    }


def paired(results: dict, variant: str, baseline: str, metric: str, seeds=None) -> tuple:
    """(mean, half-width) of the paired difference variant - baseline over ``seeds``."""
    from winnow.trainer.ablate import t_interval

    runs = {(r["variant"], r["seed"]): r["metrics"] for r in results["runs"]}
    seeds = seeds if seeds is not None else results["seeds"]
    return t_interval([runs[(variant, s)][metric] - runs[(baseline, s)][metric] for s in seeds])


def effect_table(results: dict, metrics: list[str], seeds=None, effects=None) -> str:
    """Markdown: each effect's paired difference per metric, ✓ when the 95% interval
    excludes zero in the expected direction (the curated side is better)."""
    from winnow.trainer.ablate import higher_is_better

    lines = ["| effect (variant - baseline) | " + " | ".join(metrics) + " |"]
    lines.append("|---|" + "---|" * len(metrics))
    for name, (variant, baseline) in (effects or EFFECTS).items():
        if variant not in results["variants"]:
            continue
        cells = []
        for m in metrics:
            mean, half = paired(results, variant, baseline, m, seeds)
            worse = -mean if higher_is_better(m) else mean  # > 0: the variant is worse
            ok = half is not None and worse - half > 0
            cells.append(f"{mean:+.4f} ± {half:.4f}{' ✓' if ok else ''}")
        lines.append(f"| {name}: {variant} - {baseline} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _log(t0: float):
    return lambda m: print(f"[{time.time() - t0:6.0f}s] {m}", flush=True)


def effects(out: Path, steps: int, seeds: list[int], variants: list[str]) -> dict:
    """The effects at ``steps`` (tiny preset), one seed at a time so that an
    interrupted sweep still leaves complete seeds; prints the table after each."""
    from winnow.trainer.ablate import run_ablation

    t0 = time.time()
    where = out / "study" / "scales" / "tiny" if steps == STEPS else out / f"power-{steps}"
    over = ablation_overrides(out, variants, out=str(where), **{"base.train.steps": steps})
    for n in range(1, len(seeds) + 1):
        res = run_ablation(
            PIPELINES / "fidelity_ablation.yaml", {**over, "seeds": seeds[:n]}, log=_log(t0)
        )
        print(res["table"])
        if n > 1:
            print(effect_table(res, METRICS, effects={**EFFECTS, **BUCKET_EFFECTS}))
        print(f"effects (tiny, {steps} steps, seeds {seeds[:n]}): {time.time() - t0:.0f} s")
    if steps == STEPS and len(seeds) > 1 and all(v in variants for v in RANKED):
        write_summary(res, steps, EFFECTS)
    return res


def write_summary(res: dict, steps: int, effects_of: dict) -> None:
    """Write these effects to ``benchmarks/fidelity_result.json``, what the demo cites
    for its verdict."""
    from winnow.trainer.ablate import higher_is_better

    n = len(res["seeds"])
    summary = {"effects": {}}
    for name, (variant, baseline) in effects_of.items():
        for metric in ("bpb@curated", "train_seconds") if name == "DD" else ("bpb@curated",):
            mean, half = paired(res, variant, baseline, metric)
            worse = -mean if higher_is_better(metric) else mean
            key = f"{name}: {variant} - {baseline}, {metric}, {n} seeds"
            summary["effects"][key] = {"delta": mean, "ci95": half, "separates": worse - half > 0}
    summary["budget"] = (
        f"{BASE['model']['preset']} preset, {steps} steps x "
        f"{BASE['train']['tokens_per_step']} tokens, lr {BASE['optim']['lr']:g}, CPU"
    )
    summary["command"] = f"python benchmarks/ablation_fidelity.py build, then effects --seeds {n}"
    path = ROOT / "benchmarks" / "fidelity_result.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {path}")


def scales(out: Path, seeds: int, tiny_seeds: int) -> dict:
    """The ranked variants at tiny (reusing ``effects``' runs) and mini."""
    from winnow.trainer.ablate import run_ablation

    t0 = time.time()
    over = ablation_overrides(out, RANKED, out=str(out / "study"))
    over["scales"] = [
        {"name": "tiny", "set": {"model.preset": "tiny"}, "seeds": list(range(tiny_seeds))},
        {"name": "mini", "set": MINI, "seeds": list(range(seeds))},
    ]
    res = run_ablation(PIPELINES / "fidelity_ablation.yaml", over, log=_log(t0))
    print((out / "study" / "results.md").read_text())
    print(f"scales: {time.time() - t0:.0f} s")
    return res


def report(out: Path, seeds: list[int], variants: list[str]) -> None:
    """The finished tiny runs of ``variants`` over ``seeds``: the results table, the
    effects per metric and per domain, then the power tables."""
    from winnow.trainer.ablate import run_ablation

    where = str(out / "study" / "scales" / "tiny")
    over = ablation_overrides(out, variants, out=where, seeds=seeds)
    res = run_ablation(PIPELINES / "fidelity_ablation.yaml", over, log=lambda m: None)
    every = {**EFFECTS, **BUCKET_EFFECTS}
    print(res["table"])
    print(effect_table(res, METRICS, effects=every))
    print(effect_table(res, [f"bpb@curated/{d}" for d in DOMAINS], effects=every))
    power(out)


def power(out: Path) -> None:
    """How the paired interval shrinks with seeds (first k seeds of the main runs) and
    with steps (``effects --steps S`` runs, when present). Trains nothing."""
    for where in [out / "study" / "scales" / "tiny", *sorted(out.glob("power-*"))]:
        if not (where / "results.json").is_file():
            continue
        res = json.loads((where / "results.json").read_text())
        steps = STEPS if where.name == "tiny" else int(where.name.split("-")[1])
        print(f"\n{steps} steps ({where})")
        print("| effect | seeds | " + " | ".join(POWER_METRICS) + " |")
        print("|---|---|" + "---|" * len(POWER_METRICS))
        for name, (variant, baseline) in {**EFFECTS, **BUCKET_EFFECTS}.items():
            if variant not in res["variants"] or baseline not in res["variants"]:
                continue
            for k in range(2, len(res["seeds"]) + 1):
                cells = []
                for m in POWER_METRICS:
                    mean, half = paired(res, variant, baseline, m, res["seeds"][:k])
                    cells.append(f"{mean:+.4f} ± {half:.4f}")
                print(f"| {name} | {k} | " + " | ".join(cells) + " |")


def fit(out: Path) -> None:
    """``winnow fit-weights`` on the fidelity corpus (pipelines/fidelity_fit_weights.yaml)."""
    from winnow.trainer.fit_weights import run_fit_weights

    t0 = time.time()
    result = run_fit_weights(
        PIPELINES / "fidelity_fit_weights.yaml",
        {
            "out": str(out / "fit"),
            "data": str(out / "run" / "stages" / "tokenize"),
            "eval_on": str(out / "run" / "buckets"),
        },
        log=lambda m: print(f"[{time.time() - t0:6.0f}s] {m}", flush=True),
    )
    f = result["fit"]
    print(json.dumps(result["weights"], indent=2))
    print(
        f"held-out Spearman {f['heldout_spearman']:+.3f} over {f['n_heldout']} selections "
        f"(fitted on {f['n_fit']}: {f['train_spearman']:+.3f}); {time.time() - t0:.0f} s"
    )


POWER_METRICS = ["bpb@curated", "late_loss@curated", "gold_prob@next_sentence"]
# the larger proxy: 3 layers of width 96 (0.43M parameters with the 1024-token
# vocabulary, ~2.6x tiny's FLOPs per token; what 2 shared cores allow)
MINI = {"model.preset": "tiny", "model.n_layer": 3, "model.n_head": 4, "model.n_embd": 96}


METRICS = [
    "bpb@curated",
    "late_loss@curated",
    "gold_prob@next_sentence",
    "acc_norm@next_sentence",
    "train_seconds",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "phase", choices=["build", "effects", "power", "report", "scales", "mini", "fit"]
    )
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "fidelity")
    parser.add_argument("--per-domain", type=int, default=1200)
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--tiny-seeds", type=int, default=3, help="scales: seeds at tiny")
    parser.add_argument("--variants", default=",".join(RANKED))
    args = parser.parse_args()
    seeds = list(range(args.seeds))
    variants = args.variants.split(",")
    if args.phase == "build":
        build(args.out, args.per_domain)
    elif args.phase == "effects":
        effects(args.out, args.steps, seeds, variants)
    elif args.phase == "scales":
        scales(args.out, args.seeds, args.tiny_seeds)
    elif args.phase == "power":
        power(args.out)
    elif args.phase == "report":
        report(args.out, seeds, variants)
    elif args.phase == "fit":
        fit(args.out)
    elif args.phase == "mini":  # the mini scale alone, to run beside `effects`
        from winnow.trainer.ablate import run_ablation

        where = str(args.out / "study" / "scales" / "mini")
        over = ablation_overrides(args.out, RANKED, out=where)
        over.update({f"base.{k}": v for k, v in MINI.items()})
        for n in range(1, args.seeds + 1):
            res = run_ablation(PIPELINES / "fidelity_ablation.yaml", {**over, "seeds": seeds[:n]})
            print(res["table"], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
