"""Quality-scoring benchmarks: winnow's scorers against the datatrove filters they mirror.

On the same real documents in the same run: documents per CPU-second (per core) of
each heuristic scorer (Gopher quality, Gopher repetition, C4, FineWeb) and of the
datatrove filter it mirrors, the decision agreement, the ``score`` stage running all
four in one pass, the ``fasttext`` scorer against datatrove's FastTextClassifierFilter
on the same model, and py3langid language id (throughput, and accuracy on the
example sentences spaCy ships for many languages), and CPU seconds per scorer on
three adversarial 10 MB single-line documents (the bound ``tests/test_heuristics.py``
checks for correctness only).

    python benchmarks/quality.py                      # smoke size (2000 docs)
    python benchmarks/quality.py --docs 12000         # the RESULTS.md figures

Documents are ``winnow.sample_text.real_documents`` (cached under /tmp).
"""

from __future__ import annotations

import argparse
import ast
import collections
import importlib.util
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from winnow.scorers.c4 import C4Quality  # noqa: E402
from winnow.scorers.fineweb import FineWebQuality  # noqa: E402
from winnow.scorers.gopher import GopherQuality, GopherRepetition  # noqa: E402
from winnow.scorers.text import TextBatch  # noqa: E402

HEURISTICS = {
    "gopher_quality": (GopherQuality, "GopherQualityFilter"),
    "gopher_repetition": (GopherRepetition, "GopherRepetitionFilter"),
    "c4_quality": (C4Quality, "C4QualityFilter"),
    "fineweb_quality": (FineWebQuality, "FineWebQualityFilter"),
}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=2000, help="real documents to score")
    ap.add_argument(
        "--batch", type=int, default=20_000, help="documents per Arrow batch (runner default)"
    )
    ap.add_argument("--fasttext-docs", type=int, default=2000)
    ap.add_argument(
        "--skip", nargs="*", default=[], help="parts to skip: heuristics fasttext langid huge"
    )
    ap.add_argument("--json", help="also write the figures here")
    return ap.parse_args()


def documents(n: int) -> list[dict]:
    cache = Path(tempfile.gettempdir()) / f"winnow-bench-docs-{n}.jsonl"
    if cache.exists():
        return [json.loads(line) for line in cache.read_text().splitlines()]
    from winnow.sample_text import real_documents

    docs = real_documents(n)
    cache.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return docs


def cpu(fn):
    start = time.process_time()
    result = fn()
    return result, time.process_time() - start


def run_winnow(scorer, texts: list[str], batch: int) -> tuple[list, list, float]:
    def go():
        passed, reasons = [], []
        for i in range(0, len(texts), batch):
            cols = scorer.score(TextBatch(pa.array(texts[i : i + batch])))
            passed += cols[f"{scorer.name}_pass"].to_pylist()
            reasons += cols[f"{scorer.name}_reason"].to_pylist()
        return passed, reasons

    (passed, reasons), seconds = cpu(go)
    return passed, reasons, seconds


def run_datatrove(filter_, docs: list[dict]) -> tuple[list, list, float]:
    from datatrove.data import Document

    def go():
        passed, reasons = [], []
        for d in docs:
            result = filter_.filter(Document(text=d["text"], id=d["id"]))
            ok, reason = (True, None) if result is True else result
            passed.append(bool(ok))
            reasons.append(reason)
        return passed, reasons

    (passed, reasons), seconds = cpu(go)
    return passed, reasons, seconds


def heuristics(docs: list[dict], batch: int, out: dict) -> None:
    import datatrove.pipeline.filters as dt
    from datatrove.utils.word_tokenizers import load_word_tokenizer

    load_word_tokenizer("en").word_tokenize("warm up spaCy.")  # load outside the timings
    texts = [d["text"] for d in docs]
    n = len(docs)
    print(f"\n{n} documents, {sum(map(len, texts)) / 1e6:.1f} M chars, batches of {batch}\n")
    print("| scorer | winnow docs/s per core | datatrove docs/s per core | speed-up | agreement |")
    print("|---|---:|---:|---:|---:|")
    for name, (cls, dt_name) in HEURISTICS.items():
        scorer, filter_ = cls(), getattr(dt, dt_name)()
        run_winnow(scorer, texts[:200], batch)  # warm up both sides
        run_datatrove(filter_, docs[:200])
        ours, our_reasons, t_ours = run_winnow(scorer, texts, batch)
        theirs, their_reasons, t_theirs = run_datatrove(filter_, docs)
        agree = sum(a == b for a, b in zip(ours, theirs, strict=True)) / n
        classes = collections.Counter(
            (tr or "pass", orr or "pass")
            for a, b, tr, orr in zip(ours, theirs, their_reasons, our_reasons, strict=True)
            if a != b
        )
        out[name] = {
            "winnow_docs_per_cpu_s": n / t_ours,
            "datatrove_docs_per_cpu_s": n / t_theirs,
            "speedup": t_theirs / t_ours,
            "agreement": agree,
            "disagreements": {f"{k[0]} -> {k[1]}": v for k, v in classes.most_common()},
        }
        print(
            f"| {name} | {n / t_ours:,.0f} | {n / t_theirs:,.0f} | "
            f"{t_theirs / t_ours:.1f}x | {agree:.2%} ({n - round(agree * n)} differ) |"
        )
    # all four in one score pass: words and lines are computed once per batch
    scorers = [cls() for cls, _ in HEURISTICS.values()]

    def all_four():
        for i in range(0, n, batch):
            b = TextBatch(pa.array(texts[i : i + batch]))
            for s in scorers:
                s.score(b)

    _, t_all = cpu(all_four)
    t_dt = sum(n / out[k]["datatrove_docs_per_cpu_s"] for k in HEURISTICS)
    out["all_four"] = {
        "winnow_docs_per_cpu_s": n / t_all,
        "speedup_vs_datatrove_chain": t_dt / t_all,
    }
    print(
        f"| all four, one pass | {n / t_all:,.0f} | {n / t_dt:,.0f} (sum of the four) "
        f"| {t_dt / t_all:.1f}x | |"
    )
    print("\ndisagreements (datatrove verdict -> winnow verdict):")
    for name in HEURISTICS:
        print(f"  {name}: {out[name]['disagreements'] or 'none'}")


def fasttext_scoring(docs: list[dict], n: int, out: dict) -> None:
    from datatrove.data import Document
    from datatrove.pipeline.filters import FastTextClassifierFilter

    from winnow.classifier import train_classifier
    from winnow.scorers.fasttext_quality import FastTextScorer

    rng = random.Random(0)
    texts = [d["text"] for d in docs[:n]]
    with tempfile.TemporaryDirectory() as tmp:
        good, bad = Path(tmp) / "good.jsonl", Path(tmp) / "bad.jsonl"
        good.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
        shuffled = []
        for t in texts:
            words = t.split()
            rng.shuffle(words)
            shuffled.append(" ".join(words))
        bad.write_text("".join(json.dumps({"text": t}) + "\n" for t in shuffled))
        model = Path(tmp) / "hq.bin"
        report = train_classifier(str(good), str(bad), model, bucket=200_000, epoch=10, lr=0.5)
        scorer = FastTextScorer(FastTextScorer.Params(model=str(model), label="hq"))
        scorer.setup()
        sample = texts + shuffled
        _, t_ours = cpu(lambda: scorer.score(TextBatch(pa.array(sample))))
        oracle = FastTextClassifierFilter(
            str(model), keep_labels=("hq", 0.0), newline_replacement=" "
        )
        oracle.filter(Document(text="warm up", id="0"))
        _, t_theirs = cpu(lambda: [oracle.filter(Document(text=t, id="x")) for t in sample])
    m = len(sample)
    out["fasttext"] = {
        "winnow_docs_per_cpu_s": m / t_ours,
        "datatrove_docs_per_cpu_s": m / t_theirs,
        "speedup": t_theirs / t_ours,
        "classifier_valid": report["valid"],
    }
    print(
        f"\nfasttext scorer ({m} docs, bigram model): winnow {m / t_ours:,.0f} docs/s per core, "
        f"datatrove FastTextClassifierFilter {m / t_theirs:,.0f} ({t_theirs / t_ours:.1f}x); "
        f"held-out AUC of the toy classifier {report['valid']['auc']:.3f}"
    )


def spacy_example_sentences() -> dict[str, list[str]]:
    """Example sentences spaCy ships per language (read with ast, nothing imported)."""
    spec = importlib.util.find_spec("spacy")
    if spec is None or not spec.submodule_search_locations:
        return {}
    root = Path(list(spec.submodule_search_locations)[0]) / "lang"
    out = {}
    for path in sorted(root.glob("*/examples.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and any(
                getattr(t, "id", None) == "sentences" for t in node.targets
            ):
                try:
                    out[path.parent.name] = [s for s in ast.literal_eval(node.value) if s]
                except ValueError:
                    pass
    return out


def langid(docs: list[dict], out: dict) -> None:
    from winnow.scorers.langid import LangId

    scorer = LangId()
    scorer.setup()
    texts = [d["text"] for d in docs[:3000]]
    _, seconds = cpu(lambda: scorer.score(TextBatch(pa.array(texts))))
    examples = spacy_example_sentences()
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    known = set(LanguageIdentifier.from_model_file(MODEL_FILE).labels)
    examples = {lang: s for lang, s in examples.items() if lang in known}
    gold = [lang for lang, sents in examples.items() for _ in sents]
    sents = [s for sents in examples.values() for s in sents]
    pred = scorer.score(TextBatch(pa.array(sents)))["lang"].to_pylist()
    per_lang = collections.defaultdict(lambda: [0, 0])
    for g, p in zip(gold, pred, strict=True):
        per_lang[g][0] += g == p
        per_lang[g][1] += 1
    accuracy = sum(g == p for g, p in zip(gold, pred, strict=True)) / max(len(gold), 1)
    out["langid"] = {
        "docs_per_cpu_s": len(texts) / seconds,
        "spacy_examples_accuracy": accuracy,
        "sentences": len(gold),
        "languages": len(examples),
        "per_language": {k: v[0] / v[1] for k, v in sorted(per_lang.items())},
    }
    worst = sorted(out["langid"]["per_language"].items(), key=lambda kv: kv[1])[:5]
    print(
        f"\nlangid (py3langid): {len(texts) / seconds:,.0f} docs/s per core; accuracy "
        f"{accuracy:.1%} on {len(gold)} spaCy example sentences in {len(examples)} languages "
        f"(weakest: {', '.join(f'{k} {v:.0%}' for k, v in worst)})"
    )


def huge_documents(out: dict) -> None:
    """CPU seconds of each scorer and its datatrove filter on 10 MB one-line texts."""
    import datatrove.pipeline.filters as dt

    rng = random.Random(0)
    words = "the quick brown fox jumps over a lazy dog while data flows".split()
    texts = {
        "10 MB of words": " ".join(rng.choice(words) for _ in range(1_900_000))[:10_000_000],
        "10 MB of 'x'": "x" * 10_000_000,
        "'ab-' x 300k": "ab-" * 300_000,
    }
    print("\n| document | scorer | winnow CPU s | datatrove CPU s | speed-up |")
    print("|---|---|---:|---:|---:|")
    for label, text in texts.items():
        doc = [{"id": "huge", "text": text}]
        for name, (cls, dt_name) in HEURISTICS.items():
            *_, t_ours = run_winnow(cls(), [text], 1)
            *_, t_theirs = run_datatrove(getattr(dt, dt_name)(), doc)
            out.setdefault("huge", {}).setdefault(label, {})[name] = [t_ours, t_theirs]
            print(
                f"| {label} | {name} | {t_ours:.2f} | {t_theirs:.2f} | {t_theirs / t_ours:.1f}x |"
            )


def main() -> int:
    args = parse_args()
    docs = documents(args.docs)
    out: dict = {"docs": len(docs)}
    if "heuristics" not in args.skip:
        heuristics(docs, args.batch, out)
    if "fasttext" not in args.skip:
        fasttext_scoring(docs, args.fasttext_docs, out)
    if "langid" not in args.skip:
        langid(docs, out)
    if "huge" not in args.skip:
        huge_documents(out)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
