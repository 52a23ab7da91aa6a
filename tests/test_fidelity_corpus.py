"""The fidelity benchmark's corpus: real text, labelled defects at the asked rates,
no copy of a held-out document, a cloze task from documents outside the corpus."""

import gzip
import json
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from winnow.fidelity_corpus import JUNK_KINDS, build_fidelity_corpus, roff_text
from winnow.trainer.data import doc_keys, held_out


def test_roff_text_keeps_text_and_drops_markup():
    page = "\n".join(
        [
            '.\\" a comment',
            ".TH LS 1",
            ".SH NAME",
            "ls \\- list directory contents",
            ".SH DESCRIPTION",
            ".B ls",
            "lists \\fBfiles\\fR and \\fIdirs\\fP\\(em sorted.",
            ".PP",
            "Second paragraph.",
        ]
    )
    assert roff_text(page) == (
        "NAME\nls - list directory contents\n\nDESCRIPTION\nls\n"
        "lists files and dirs- sorted.\n\nSecond paragraph."
    )


def _rows(root):
    rows = []
    for f in sorted((root / "input").glob("*.jsonl.gz")):
        rows += [json.loads(line) for line in gzip.decompress(f.read_bytes()).splitlines()]
    return rows


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("fid")
    labels = build_fidelity_corpus(root, per_domain=40, task_docs=8, popular=6)
    return root, labels


def test_defect_rates_labels_and_determinism(corpus, tmp_path):
    root, labels = corpus
    rows = _rows(root)
    assert {r["id"] for r in rows} == set(labels) and len(rows) == len(labels)
    counts = Counter(labels.values())
    copies = counts["exact_copy"] + counts["near_copy"]
    assert copies / (copies + counts["clean"]) == pytest.approx(0.4, abs=0.01)
    junk = sum(counts[k] for k in JUNK_KINDS)
    assert junk / len(rows) == pytest.approx(0.25, abs=0.01)
    assert {counts[k] for k in JUNK_KINDS} <= {junk // 4, junk // 4 + 1}
    assert {r["source"] for r in rows if labels[r["id"]] == "clean"} >= {"docstring", "comment"}
    again = tmp_path / "again"
    assert build_fidelity_corpus(again, per_domain=40, task_docs=8, popular=6) == labels
    for f in sorted((root / "input").glob("*.jsonl.gz")):
        assert (again / "input" / f.name).read_bytes() == f.read_bytes()


def test_copies_come_from_training_documents_only(corpus):
    root, labels = corpus
    text = {r["id"]: r["text"] for r in _rows(root)}
    sources = {i.split(":", 2)[2]: i for i, v in labels.items() if v.endswith("_copy")}
    assert len({s for s in sources}) <= 6
    val = held_out(doc_keys(pa.array(sorted(sources))), 0.05)
    assert not val.any()
    copies = sorted(i for i, v in labels.items() if v.endswith("_copy"))
    assert not held_out(doc_keys(pa.array(copies)), 0.05).any()  # no copy is held out
    for doc_id, label in labels.items():
        if not label.endswith("_copy"):
            continue
        src = text[doc_id.split(":", 2)[2]]
        if label == "exact_copy":
            assert text[doc_id] == src
        else:  # a few words edited, line breaks kept
            assert text[doc_id].count("\n") == src.count("\n") and text[doc_id] != src
            a, b = src.split(), text[doc_id].split()
            assert abs(len(a) - len(b)) <= 0.06 * len(a) + 2


def test_next_sentence_task_uses_documents_outside_the_corpus(corpus):
    root, _ = corpus
    items = [
        json.loads(x) for x in (root / "tasks" / "next_sentence.jsonl").read_text().splitlines()
    ]
    assert len(items) >= 8
    corpus_text = " ".join(" ".join(r["text"].split()) for r in _rows(root))
    for item in items:
        assert len(item["choices"]) == 4 and len(set(item["choices"])) == 4
        assert 0 <= item["gold"] < 4
        assert " ".join(item["query"].split())[-80:] not in corpus_text
    golds = np.bincount([i["gold"] for i in items], minlength=4)
    assert golds.max() < len(items)  # the right answer's position varies
