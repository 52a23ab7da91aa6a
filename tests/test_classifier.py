"""fastText quality classifiers: training from files or SQL over a run, the CLI, and
the ``fasttext`` scorer against datatrove's FastTextClassifierFilter."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pytest

from winnow.classifier import roc_auc, train_classifier
from winnow.cli import main
from winnow.errors import WinnowError
from winnow.pipeline import load_pipeline
from winnow.sample_text import real_documents
from winnow.stages.score import Score

pytest.importorskip("fasttext")

SMALL = dict(dim=16, bucket=50_000, epoch=20, lr=0.5)  # tiny model, fast to train


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    """Real docstrings (positives) and the same words shuffled (negatives)."""
    root = tmp_path_factory.mktemp("clf")
    rng = random.Random(0)
    good = [d["text"] for d in real_documents(800)]
    bad = []
    for text in good:
        words = text.split()
        rng.shuffle(words)
        bad.append(" ".join(words))
    for name, texts in (("good", good), ("bad", bad)):
        with open(root / f"{name}.jsonl", "w") as f:
            for i, t in enumerate(texts):
                f.write(json.dumps({"id": f"{name}{i}", "text": t}) + "\n")
    # the same documents as a scored run: Arrow IPC with a score column
    table = pa.table(
        {
            "id": [f"g{i}" for i in range(len(good))] + [f"b{i}" for i in range(len(bad))],
            "text": good + bad,
            "ref_score": [0.9] * len(good) + [0.1] * len(bad),
        }
    )
    run = root / "run"
    run.mkdir()
    half = table.num_rows // 2
    for i, part in enumerate((table.slice(0, half + 7), table.slice(half + 7))):
        with pa.ipc.new_file(run / f"part-{i}.arrow", part.schema) as writer:
            writer.write_table(part)
    return {"root": root, "good": good, "bad": bad, "run": run}


def test_train_from_files_reports_held_out_metrics(corpus):
    root = corpus["root"]
    out = root / "models" / "hq.bin"
    report = train_classifier(str(root / "good.jsonl"), str(root / "bad.jsonl"), out, **SMALL)
    assert out.is_file()
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved == json.loads(json.dumps(report))
    valid = report["valid"]
    assert report["documents"] == {"hq": 800, "lq": 800}
    assert report["params"]["wordNgrams"] == 2
    assert valid["positives"] + valid["negatives"] == report["valid_rows"] == 160
    assert valid["auc"] > 0.9 and valid["precision"] > 0.8 and valid["recall"] > 0.8


def test_training_is_deterministic(corpus, tmp_path):
    root = corpus["root"]
    args = (str(root / "good.jsonl"), str(root / "bad.jsonl"))
    a = train_classifier(*args, tmp_path / "a.bin", **SMALL)
    b = train_classifier(*args, tmp_path / "b.bin", **SMALL)
    assert a["valid"] == b["valid"]
    assert (tmp_path / "a.bin").read_bytes() == (tmp_path / "b.bin").read_bytes()


def test_train_from_sql_over_a_scored_run(corpus, tmp_path):
    report = train_classifier(
        "ref_score > 0.5",
        "SELECT text FROM docs WHERE ref_score <= 0.5",
        tmp_path / "sql.bin",
        data=str(corpus["run"]),
        max_docs=300,
        **SMALL,
    )
    assert report["documents"] == {"hq": 300, "lq": 300}
    assert report["valid"]["auc"] > 0.8
    with pytest.raises(WinnowError, match="no_such_column"):
        train_classifier("no_such_column > 1", "ref_score < 0.5", tmp_path / "x.bin",
                         data=str(corpus["run"]), **SMALL)  # fmt: skip


def test_cli(corpus, tmp_path, capsys):
    root = corpus["root"]
    code = main(
        [
            "train-classifier",
            "--positives", str(root / "good.jsonl"),
            "--negatives", str(root / "bad.jsonl"),
            "--out", str(tmp_path / "cli.bin"),
            "--dim", "16", "--bucket", "50000", "--max-docs", "200", "--lr", "0.5",
        ]
    )  # fmt: skip
    assert code == 0
    assert "precision" in capsys.readouterr().out
    assert (tmp_path / "cli.json").is_file()


def test_roc_auc_matches_pairwise_definition():
    rng = random.Random(1)
    score = [rng.choice([0.1, 0.2, 0.5, 0.7, 0.9]) for _ in range(60)]
    truth = [rng.random() < 0.4 for _ in range(60)]
    pos = [s for s, t in zip(score, truth, strict=True) if t]
    neg = [s for s, t in zip(score, truth, strict=True) if not t]
    pairs = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))
    import numpy as np

    assert roc_auc(np.array(score), np.array(truth)) == pytest.approx(pairs)


@pytest.fixture(scope="module")
def model_path(corpus) -> Path:
    root = corpus["root"]
    out = root / "scorer.bin"
    train_classifier(str(root / "good.jsonl"), str(root / "bad.jsonl"), out, **SMALL)
    return out


def test_fasttext_scorer_matches_datatrove(corpus, model_path):
    from datatrove.data import Document
    from datatrove.pipeline.filters import FastTextClassifierFilter

    texts = corpus["good"][:100] + corpus["bad"][:100] + ["", "two\nlines of text"]
    stage = Score(
        Score.Params(
            scorers=[
                {
                    "use": "fasttext",
                    "params": {"model": str(model_path), "label": "hq", "column": "dclm_score"},
                }
            ]
        ),
        stage_id="q",
        seed=0,
    )
    stage.setup()
    table = pa.table({"id": [str(i) for i in range(len(texts))], "text": texts})
    ours = stage.process(table).kept.column("dclm_score").to_pylist()
    oracle = FastTextClassifierFilter(
        str(model_path), keep_labels=("hq", 0.0), newline_replacement=" "
    )
    for text, value in zip(texts, ours, strict=True):
        doc = Document(text=text, id="x")
        oracle.filter(doc)
        assert value == pytest.approx(doc.metadata["__label__hq"], abs=1e-6)
    assert sum(v > 0.5 for v in ours[:100]) > 90 and sum(v < 0.5 for v in ours[100:200]) > 90


def test_fasttext_scorer_errors(model_path):
    from winnow.scorers.fasttext_quality import FastTextScorer

    with pytest.raises(WinnowError, match="no label '__label__spam'"):
        FastTextScorer(FastTextScorer.Params(model=str(model_path), label="spam")).setup()
    with pytest.raises(WinnowError, match="not a fastText model"):
        bad = model_path.with_name("bad.bin")
        bad.write_bytes(b"not a model")
        FastTextScorer(FastTextScorer.Params(model=str(bad))).setup()


def test_dclm_pipeline_validates():
    spec = load_pipeline(Path(__file__).resolve().parents[1] / "pipelines" / "dclm.yaml")
    top = spec.stages[-1]
    assert top.use == "select" and top.params == {"by": "dclm_score", "fraction": 0.1}
