"""``winnow demo``: an offline corpus with known defects, curated end to end.

The clean documents are real text every Python install carries (standard-library
docstrings and installed packages' READMEs, see ``sample_text``). Into them we
inject defects with ground-truth labels: exact duplicates, near-duplicates at
several word-edit rates, navigation/boilerplate pages, keyword spam, very short
and empty documents, and malformed input lines. The demo runs
``pipelines/demo.yaml`` and reports, per defect type, how many the pipeline caught
and how much clean text it dropped.
"""

from __future__ import annotations

import gzip
import json
import random
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow as pa
from rich.console import Console
from rich.table import Table

from winnow.config import read_yaml
from winnow.io.writers import read_table, write_table
from winnow.sample_text import real_documents
from winnow.trainer.data import doc_keys, held_out, trainable_id

PIPELINES = Path(__file__).resolve().parent.parent / "pipelines"
PIPELINE = PIPELINES / "demo.yaml"
ABLATION = PIPELINES / "ablation.yaml"
FIDELITY_RESULT = PIPELINES.parent / "benchmarks" / "fidelity_result.json"
NEAR_DUP_RATES = (0.01, 0.03, 0.1, 0.2, 0.3)
NAV_LINES = [
    "Home | About us | Contact | Careers | Blog",
    "Sign in  Register  Forgot password?",
    "Share on Facebook  Share on Twitter  Email this page",
    "Cookie policy | Privacy | Terms of use",
    "Skip to main content",
    "Previous page  Next page  Back to top",
    "Copyright 2024 All rights reserved.",
    "Subscribe to our newsletter",
]
SPAM_WORDS = ["cheap", "casino", "bonus", "free", "pills", "win", "best", "price", "deal", "now"]
FILLER = ["data", "model", "value", "result", "system", "method", "process", "object"]


def edit_words(text: str, rate: float, rng: random.Random) -> str:
    """Replace, drop or insert about ``rate`` of the words."""
    words = text.split()
    out = []
    for w in words:
        r = rng.random()
        if r < rate / 3:
            continue
        if r < 2 * rate / 3:
            out.append(rng.choice(FILLER))
            continue
        out.append(w)
        if r < rate:
            out.append(rng.choice(FILLER))
    return " ".join(out)


def build_corpus(out_dir: Path, docs: int, seed: int = 0, shards: int = 4) -> dict[str, str]:
    """Write ``input/part-*.jsonl.gz`` and ``labels.json``; returns id -> defect label."""
    rng = random.Random(seed)
    clean = real_documents(docs)
    rows: list[dict] = [dict(d) for d in clean]
    labels = {d["id"]: "clean" for d in clean}

    def add(row: dict, label: str) -> None:
        rows.append(row)
        labels[row["id"]] = label

    # copies are of documents the ablation trains on, under ids it trains on: a held-out
    # document with a copy in training (or a held-out copy) would favour the raw variant
    val_fraction = read_yaml(ABLATION)["base"]["data"]["val_fraction"]
    held = held_out(doc_keys(pa.array([d["id"] for d in clean])), val_fraction)
    trainable = [d for d, h in zip(clean, held, strict=True) if not h]
    n = max(10, docs // 40)
    junk = max(10, docs // 8)  # spam and boilerplate pages are common in web crawls
    for i, src in enumerate(rng.sample(trainable, n)):
        doc_id = trainable_id(f"exact-{i}", val_fraction)
        add({"id": doc_id, "text": src["text"], "source": src["source"]}, "exact_duplicate")
    similarity = {}
    for rate in NEAR_DUP_RATES:
        for i, src in enumerate(rng.sample(trainable, n // 2)):
            text = edit_words(src["text"], rate, rng)
            doc_id = trainable_id(f"near{rate}-{i}", val_fraction)
            add({"id": doc_id, "text": text, "source": src["source"]}, f"near_dup_{rate}")
            similarity[doc_id] = _jaccard(text, src["text"])
    for i in range(junk):
        lines = [rng.choice(NAV_LINES) for _ in range(rng.randint(4, 12))]
        add({"id": f"nav-{i}", "text": "\n".join(lines), "source": "web"}, "boilerplate")
    for i in range(junk):
        words = [rng.choice(SPAM_WORDS[: rng.randint(3, 6)]) for _ in range(rng.randint(60, 300))]
        add({"id": f"spam-{i}", "text": " ".join(words), "source": "web"}, "keyword_spam")
    for i in range(n):
        words = rng.sample(clean, 1)[0]["text"].split()[: rng.randint(1, 8)]
        add({"id": f"short-{i}", "text": " ".join(words), "source": "web"}, "short")
    for i in range(n // 2):
        add(
            {"id": f"empty-{i}", "text": rng.choice(["", " ", "\n\n", "\t "]), "source": "web"},
            "empty",
        )
    rng.shuffle(rows)

    out_dir.mkdir(parents=True, exist_ok=True)
    input_dir = out_dir / "input"
    input_dir.mkdir(exist_ok=True)
    malformed = [
        b'{"id": "bad-json", "text": "unterminated\n',
        b'{"id": "bad-utf8", "text": "caf\xe9 \xff"}\n',
        b'{"id": "no-text", "body": "the text field is missing"}\n',
        b'{"id": "null-text", "text": null}\n',
        b'{"id": "number-text", "text": 42}\n',
        b'["not", "an", "object"]\n',
    ]
    per_shard = -(-len(rows) // shards)
    for s in range(shards):
        lines = [
            json.dumps(r, ensure_ascii=False).encode() + b"\n"
            for r in rows[s * per_shard :][:per_shard]
        ]
        if s < len(malformed):
            lines.insert(len(lines) // 2, malformed[s])
        if s == shards - 1:
            lines[len(lines) // 3 : len(lines) // 3] = malformed[shards:]
        with gzip.GzipFile(input_dir / f"part-{s:02d}.jsonl.gz", "wb", mtime=0) as f:
            f.writelines(lines)
    (out_dir / "labels.json").write_text(json.dumps(labels, indent=0, sort_keys=True))
    (out_dir / "near_dup_jaccard.json").write_text(json.dumps(similarity, indent=0, sort_keys=True))
    return labels


def _jaccard(a: str, b: str, n: int = 5) -> float:
    """Jaccard similarity of word 5-gram sets (lowercased), the MinHash stage's target."""

    def grams(text: str) -> set:
        words = text.lower().split()
        return {tuple(words[i : i + n]) for i in range(max(1, len(words) - n + 1))}

    x, y = grams(a), grams(b)
    return len(x & y) / len(x | y) if x | y else 1.0


def _rejections(run_dir: Path) -> dict[str, str]:
    """id -> stage that rejected it, from ``rejected/``."""
    out: dict[str, str] = {}
    for stage_dir in sorted((run_dir / "rejected").glob("*")):
        for path in sorted(stage_dir.glob("part-*.arrow")):
            for i in read_table(path).column("id").to_pylist():
                out.setdefault(i, stage_dir.name)
    return out


def defect_report(labels: dict[str, str], run_dir: Path, similarity: dict[str, float]) -> Table:
    """Per defect type: injected, caught, and which stages caught them. Clean documents
    removed by a dedup stage duplicate another clean document (the standard library
    repeats some docstrings), so they are counted apart from wrongly dropped ones."""
    rejected = _rejections(run_dir)
    labels = dict(labels)
    for doc_id, label in labels.items():
        if label == "clean" and rejected.get(doc_id, "").endswith("dedup"):
            labels[doc_id] = "clean, natural duplicate"
    injected = Counter(labels.values())
    caught: Counter[str] = Counter()
    by_stage: dict[str, Counter] = defaultdict(Counter)
    for doc_id, label in labels.items():
        if doc_id in rejected:
            caught[label] += 1
            by_stage[label][rejected[doc_id]] += 1
    read_rejects = sum(1 for i, s in rejected.items() if s == "read" and i not in labels)
    similar = Counter(labels[i] for i, j in similarity.items() if j >= 0.8)
    similar_caught = Counter(labels[i] for i, j in similarity.items() if j >= 0.8 and i in rejected)
    table = Table(title="defects caught (ground truth vs rejected/)")
    for col in ("defect", "injected", "caught", "rate", "caught by"):
        table.add_column(col, justify="left" if col in ("defect", "caught by") else "right")
    for label in sorted(injected, key=lambda x: (x.startswith("clean"), x)):
        n, c = injected[label], caught[label]
        stages = ", ".join(f"{s}:{k}" for s, k in by_stage[label].most_common())
        name = "clean (wrongly dropped)" if label == "clean" else label
        if label.startswith("near_dup"):
            name += f" ({similar[label]} with Jaccard>=0.8: {similar_caught[label]} caught)"
        table.add_row(name, str(n), str(c), f"{c / n:.0%}" if n else "-", stages)
    table.add_row("malformed lines", "6", str(read_rejects), f"{read_rejects / 6:.0%}", "read")
    return table


def train_demo_tokenizer(out: Path, vocab: int = 1024) -> Path:
    """A small byte-level BPE fitted on the demo input (raw text, so neither ablation
    variant is favoured). A small vocabulary keeps the CPU proxy models fast."""
    from winnow.config import InputSpec
    from winnow.io.discovery import plan_chunks
    from winnow.io.readers import read_chunk
    from winnow.tokenizer import train_tokenizer

    spec = InputSpec(path=str(out / "input"))
    texts = [read_chunk(c, spec).table.select(["text"]) for c in plan_chunks(spec, 100_000)]
    write_table(out / "tokenizer-text.arrow", pa.concat_tables(texts))
    return train_tokenizer([out / "tokenizer-text.arrow"], out / "tokenizer.json", vocab)


def verdict(results: dict, cached: dict | None) -> list[str]:
    """The demo's last lines: the metric, the paired interval over the demo's seeds,
    the decision, and what the demo's budget can and cannot show, with the fidelity
    benchmark's recorded result (``cached``) for the decision it cannot make."""
    from winnow.trainer.ablate import higher_is_better

    primary = results["primary"]
    entry = results["variants"]["curated"].get(primary, {})
    delta, half = entry.get("delta"), entry.get("delta_ci95")
    seeds = len(results["seeds"])
    if delta is None or half is None:
        return [f"metric: {primary}; one seed gives no interval, so no decision"]
    lines = [
        f"metric: {primary} (held-out curated documents); curated - raw = {delta:+.4f} "
        f"± {half:.4f} (95% paired t-interval over {seeds} seeds)"
    ]
    if abs(delta) > half:
        better = "helped" if (delta < 0) != higher_is_better(primary) else "hurt"
        lines.append(f"decision: curation {better} (the interval excludes zero)")
    else:
        lines.append(
            "decision: none at the demo's budget (the interval includes zero): a tiny model "
            "trained for a minute shows that the loop runs and which way it leans, not "
            "which data is better"
        )
    if cached:
        effects = "; ".join(
            f"{name} {e['delta']:+.4f} ± {e['ci95']:.4f}"
            + (" (decided)" if e["separates"] else " (not decided)")
            for name, e in cached["effects"].items()
        )
        lines.append(
            f"the fidelity benchmark ({cached['budget']}; variant - curated): {effects}. "
            f"Reproduce: {cached['command']}"
        )
    return lines


def fidelity_result() -> dict | None:
    """The fidelity benchmark's recorded summary (benchmarks/fidelity_result.json)."""
    path = FIDELITY_RESULT
    return json.loads(path.read_text()) if path.is_file() else None


def run_demo(out: Path, *, workers: int | None, docs: int, console: Console) -> int:
    from winnow.pipeline import load_pipeline
    from winnow.runners.local import run_pipeline
    from winnow.trainer.ablate import run_ablation

    console.rule("winnow demo")
    console.print(f"building an offline corpus from {docs} real documents into {out}/input")
    labels = build_corpus(out, docs)
    tokenizer = str(train_demo_tokenizer(out))
    run_dir = out / "run"
    spec = load_pipeline(
        PIPELINE,
        {
            "input.path": str(out / "input"),
            "output.dir": str(run_dir),
            "stages.tokenize.params.tokenizer": tokenizer,
            "stages.tokenize_raw.params.tokenizer": tokenizer,
        },
    )
    ledger = run_pipeline(spec, workers=workers, progress=True)
    console.print(ledger.render())
    similarity = json.loads((out / "near_dup_jaccard.json").read_text())
    console.print(defect_report(labels, run_dir, similarity))
    console.rule("proxy-model ablation: raw vs curated (tiny GPT on CPU)")
    results = run_ablation(
        ABLATION,
        {
            "out": str(out / "ablation"),
            "variants": {"raw": str(run_dir / "buckets-raw"), "curated": str(run_dir / "buckets")},
            "base.train.threads": 1,
        },
        log=lambda line: None,
    )
    console.print((out / "ablation" / "results.md").read_text())
    console.rule("verdict")
    for line in verdict(results, fidelity_result()):
        console.print(line)
    console.print(f"run directory: {run_dir}  (try: winnow inspect {run_dir})")
    return 0
