"""Train a fastText quality classifier from positive and negative documents.

Each side is one or more *sources*:

- files or globs (JSONL[.gz|.zst], Parquet, Arrow IPC, anything ``input.path``
  accepts) with a text column;
- with ``data`` (the Arrow files of a scored run: a directory or glob), a DuckDB
  query over the view ``docs``: a full ``SELECT ...`` returning the text column, or
  just a condition, e.g. ``"gopher_quality_pass AND fineweb_quality_pass"``, read as
  ``SELECT text FROM docs WHERE <condition>``.

The recipe follows DCLM: supervised fastText on word bigrams (``word_ngrams=2``),
newlines replaced by spaces, labels ``__label__hq`` / ``__label__lq``. A held-out
split (``valid_fraction``) gives precision, recall and accuracy at probability 0.5
and the ROC AUC, written with the parameters to ``<out>.json`` beside the model.
Same inputs and seed give the same model (one training thread by default).

    winnow train-classifier --positives refs/*.jsonl --negatives runs/x/out/*.arrow \\
        --out models/hq.bin
    winnow train-classifier --data 'runs/x/score/*.arrow' --positives 'dclm_score > 0.9' \\
        --negatives 'dclm_score < 0.1' --out models/hq2.bin
"""

from __future__ import annotations

import argparse
import glob
import json
import multiprocessing
import tempfile
from pathlib import Path

import numpy as np

from winnow.errors import InputError, WinnowError

POSITIVE, NEGATIVE = "hq", "lq"


def train_classifier(
    positives: str | list[str],
    negatives: str | list[str],
    out_path: str | Path,
    *,
    data: str | None = None,
    text_column: str = "text",
    label: str = POSITIVE,
    negative_label: str = NEGATIVE,
    valid_fraction: float = 0.1,
    max_docs: int | None = None,
    seed: int = 0,
    word_ngrams: int = 2,
    dim: int = 100,
    epoch: int = 5,
    lr: float = 0.1,
    min_count: int = 1,
    bucket: int = 2_000_000,
    threads: int = 1,
) -> dict:
    """Train, save the model to ``out_path`` and its report to ``<out_path>.json``.

    ``max_docs`` caps each side (a deterministic sample). Returns the report.
    """
    if not 0 <= valid_fraction < 1:
        raise WinnowError("valid_fraction must be in [0, 1)")
    rng = np.random.default_rng(seed)
    sides = {}
    for name, sources in ((label, positives), (negative_label, negatives)):
        texts = [_clean(t) for t in read_texts(sources, data=data, text_column=text_column)]
        texts = [t for t in texts if t]
        if not texts:
            raise InputError(f"no {name!r} documents in {sources!r}")
        if max_docs is not None and len(texts) > max_docs:
            keep = np.sort(rng.choice(len(texts), size=max_docs, replace=False))
            texts = [texts[i] for i in keep]
        sides[name] = texts
    rows = [(f"__label__{name}", t) for name, texts in sides.items() for t in texts]
    order = rng.permutation(len(rows))
    n_valid = int(round(valid_fraction * len(rows)))
    valid = [rows[i] for i in order[:n_valid]]
    train = [rows[i] for i in order[n_valid:]]

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    params = dict(
        wordNgrams=word_ngrams,
        dim=dim,
        epoch=epoch,
        lr=lr,
        minCount=min_count,
        bucket=bucket,
        thread=threads,
        seed=seed,
        loss="softmax",
    )
    tmp_model = out_path.with_name(out_path.name + ".tmp")
    with tempfile.TemporaryDirectory() as tmp:
        train_file = Path(tmp) / "train.txt"
        train_file.write_text("".join(f"{lab} {t}\n" for lab, t in train), encoding="utf-8")
        train_fasttext(str(train_file), str(tmp_model), **params)
    tmp_model.replace(out_path)
    from fasttext.FastText import _FastText

    model = _FastText(model_path=str(out_path))

    report = {
        "model": str(out_path),
        "labels": {"positive": f"__label__{label}", "negative": f"__label__{negative_label}"},
        "documents": {name: len(texts) for name, texts in sides.items()},
        "train_rows": len(train),
        "valid_rows": len(valid),
        "params": params,
        "sources": {"positives": positives, "negatives": negatives, "data": data},
        "valid": evaluate(model, valid, f"__label__{label}") if valid else None,
    }
    report_path = out_path.with_suffix(".json")
    report_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def train_fasttext(train_file: str, model_file: str, **params) -> None:
    """``fasttext.train_supervised`` in a fresh (spawned) process; saves the model.

    The fastText build we use keeps state between trainings in one process: a
    second training on the same data and seed can differ or diverge ("Encountered
    NaN"). A fresh process gives the same model every time.
    """
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        error = pool.apply(_train_worker, (train_file, model_file, params))
    if error:
        raise WinnowError(f"fastText training failed: {error} (try a lower lr)")


def _train_worker(train_file: str, model_file: str, params: dict) -> str | None:
    import fasttext

    try:
        model = fasttext.train_supervised(input=train_file, verbose=0, **params)
    except RuntimeError as exc:
        return str(exc)
    model.save_model(model_file)
    return None


def _clean(text: str | None) -> str:
    return " ".join((text or "").split())


def evaluate(model, rows: list[tuple[str, str]], positive: str, threshold: float = 0.5) -> dict:
    """Precision/recall/accuracy at ``threshold`` and ROC AUC on labelled rows."""
    labels, probs = model.predict([t for _, t in rows], k=len(model.labels))
    score = np.array(
        [
            dict(zip(ls, ps, strict=True)).get(positive, 0.0)
            for ls, ps in zip(labels, probs, strict=True)
        ]
    )
    truth = np.array([lab == positive for lab, _ in rows])
    pred = score >= threshold
    tp = int((pred & truth).sum())
    fp = int((pred & ~truth).sum())
    fn = int((~pred & truth).sum())
    return {
        "threshold": threshold,
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        "accuracy": float((pred == truth).mean()),
        "auc": roc_auc(score, truth),
        "positives": int(truth.sum()),
        "negatives": int((~truth).sum()),
    }


def roc_auc(score: np.ndarray, truth: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties count half); None if one class."""
    n_pos, n_neg = int(truth.sum()), int((~truth).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    sorted_scores = score[order]
    # average ranks over ties
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(score)]
    for s, e in zip(starts, ends, strict=True):
        ranks[order[s:e]] = (s + e + 1) / 2.0
    return float((ranks[truth].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


# ---------------------------------------------------------------------- sources


def read_texts(sources: str | list[str], *, data: str | None, text_column: str) -> list[str]:
    """Texts of every source, in order (see the module doc for what a source is)."""
    if isinstance(sources, str):
        sources = [sources]
    texts: list[str] = []
    for source in sources:
        if data is not None and not _is_files(source):
            texts += _query(source, data, text_column)
        else:
            texts += _read_files(source, text_column)
    return texts


def _is_files(source: str) -> bool:
    return "://" in source or bool(glob.glob(str(Path(source).expanduser())))


def _read_files(source: str, text_column: str) -> list[str]:
    from winnow.config import InputSpec
    from winnow.io.discovery import plan_chunks
    from winnow.io.readers import read_chunk

    spec = InputSpec(path=source, text_field=text_column, id_field=None, on_error="fail")
    texts: list[str] = []
    for chunk in plan_chunks(spec, chunk_rows=100_000):
        texts += read_chunk(chunk, spec).table.column("text").to_pylist()
    return texts


def _query(source: str, data: str, text_column: str) -> list[str]:
    import pyarrow.dataset as ds

    from winnow.sql import connect

    root = Path(data).expanduser()
    files = (
        sorted(root.rglob("*.arrow"))
        if root.is_dir()
        else sorted(Path(p) for p in glob.glob(str(root)))
    )
    if not files:
        raise InputError(f"{data}: no Arrow files to query")
    con = connect()
    con.register("docs", ds.dataset([str(f) for f in files], format="ipc"))
    sql = source.strip()
    if not sql.lower().startswith(("select", "with")):
        sql = f'SELECT "{text_column}" FROM docs WHERE {sql}'
    try:
        table = con.sql(sql).to_arrow_table()
    except Exception as exc:
        raise InputError(f"query {source!r} over {data}: {str(exc).splitlines()[0]}") from None
    column = text_column if text_column in table.column_names else table.column_names[0]
    return table.column(column).to_pylist()


# ---------------------------------------------------------------------- CLI


def add_train_classifier_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--positives", nargs="+", required=True, help="sources of good documents")
    parser.add_argument("--negatives", nargs="+", required=True, help="sources of bad documents")
    parser.add_argument("--out", required=True, help="model path (report: <out>.json)")
    parser.add_argument("--data", help="Arrow files (dir or glob) that SQL sources query as `docs`")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--label", default=POSITIVE)
    parser.add_argument("--negative-label", default=NEGATIVE)
    parser.add_argument("--valid-fraction", type=float, default=0.1)
    parser.add_argument("--max-docs", type=int, help="cap per side (deterministic sample)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--word-ngrams", type=int, default=2)
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--epoch", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--min-count", type=int, default=1)
    parser.add_argument("--bucket", type=int, default=2_000_000)
    parser.add_argument("--threads", type=int, default=1)


def cli_train_classifier(args: argparse.Namespace) -> int:
    report = train_classifier(
        args.positives,
        args.negatives,
        args.out,
        data=args.data,
        text_column=args.text_column,
        label=args.label,
        negative_label=args.negative_label,
        valid_fraction=args.valid_fraction,
        max_docs=args.max_docs,
        seed=args.seed,
        word_ngrams=args.word_ngrams,
        dim=args.dim,
        epoch=args.epoch,
        lr=args.lr,
        min_count=args.min_count,
        bucket=args.bucket,
        threads=args.threads,
    )
    valid = report["valid"] or {}
    print(
        f"wrote {report['model']} ({report['train_rows']} train rows); held out "
        f"{report['valid_rows']}: precision {valid.get('precision', float('nan')):.3f} "
        f"recall {valid.get('recall', float('nan')):.3f} auc {valid.get('auc') or float('nan'):.3f}"
    )
    return 0
