"""Heuristic scorers (Gopher, C4, FineWeb) against datatrove's filters as the oracle.

Parity is measured on ~3k real documents (stdlib docstrings and package READMEs,
cached under /tmp); the benchmark measures it on >= 10k. The n-gram scans are
checked exactly against datatrove's own functions; bad inputs must not crash and
must stay fast.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pytest

from winnow.errors import ConfigError
from winnow.pipeline import load_pipeline, parse_pipeline
from winnow.sample_text import real_documents
from winnow.scorers.c4 import C4Quality
from winnow.scorers.fineweb import FineWebQuality
from winnow.scorers.gopher import GopherQuality, GopherRepetition, NGrams
from winnow.scorers.text import TextBatch, splitlines
from winnow.scorers.words import tokenize
from winnow.stages.score import C4Clean, Score

datatrove = pytest.importorskip("datatrove")
from datatrove.data import Document  # noqa: E402
from datatrove.pipeline.filters import (  # noqa: E402
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
)

N_DOCS = 3000
CACHE = Path(f"/tmp/winnow-test-docs-{N_DOCS}.jsonl")
ORACLE = Path(f"/tmp/winnow-test-datatrove-{N_DOCS}-v1.json")

# our reason names -> datatrove's, for comparing why documents fail
GOPHER_REASONS = {
    "short_doc": "gopher_short_doc",
    "long_doc": "gopher_long_doc",
    "short_mean_word": "gopher_below_avg_threshold",
    "long_mean_word": "gopher_above_avg_threshold",
    "too_many_hashes": "gopher_too_many_hashes",
    "too_many_ellipsis": "gopher_too_many_ellipsis",
    "too_many_bullet_lines": "gopher_too_many_bullets",
    "too_many_ellipsis_lines": "gopher_too_many_end_ellipsis",
    "few_alpha_words": "gopher_below_alpha_threshold",
    "few_stop_words": "gopher_enough_stop_words",
}


@pytest.fixture(scope="module")
def docs() -> list[dict]:
    if CACHE.exists():
        return [json.loads(line) for line in CACHE.read_text().splitlines()]
    out = real_documents(N_DOCS)
    CACHE.write_text("".join(json.dumps(d) + "\n" for d in out))
    return out


@pytest.fixture(scope="module")
def oracle(docs) -> dict:
    """datatrove's verdict (pass, reason) per filter, and C4's rewritten text."""
    if ORACLE.exists():
        return json.loads(ORACLE.read_text())
    filters = {
        "gopher_quality": GopherQualityFilter(),
        "gopher_repetition": GopherRepetitionFilter(),
        "c4_quality": C4QualityFilter(),
        "fineweb_quality": FineWebQualityFilter(),
    }
    out: dict = {name: [] for name in filters} | {"c4_text": []}
    for d in docs:
        for name, f in filters.items():
            doc = Document(text=d["text"], id=d["id"])
            result = f.filter(doc)
            ok, reason = (True, None) if result is True else result
            out[name].append([bool(ok), reason])
            if name == "c4_quality":
                out["c4_text"].append(doc.text if ok else None)
    ORACLE.write_text(json.dumps(out))
    return out


def all_heuristics() -> Score:
    """A ready ``score`` stage running the four heuristic scorers."""
    names = ["gopher_quality", "gopher_repetition", "c4_quality", "fineweb_quality"]
    stage = Score(Score.Params(scorers=[{"use": n} for n in names]), stage_id="s", seed=0)
    stage.setup()
    return stage


@pytest.fixture(scope="module")
def scored(docs) -> dict:
    stage = all_heuristics()
    table = pa.table({"id": [d["id"] for d in docs], "text": [d["text"] for d in docs]})
    out = stage.process(table)
    assert out.kept.num_rows == table.num_rows
    return out.kept.to_pydict()


@pytest.mark.parametrize(
    "name", ["gopher_quality", "gopher_repetition", "c4_quality", "fineweb_quality"]
)
def test_decisions_agree_with_datatrove(name, scored, oracle):
    ours = scored[f"{name}_pass"]
    theirs = [ok for ok, _ in oracle[name]]
    agree = sum(a == b for a, b in zip(ours, theirs, strict=True)) / len(ours)
    assert agree >= 0.99, f"{name}: {agree:.4f} agreement"
    # both sides exercise both outcomes on this sample
    assert 0 < sum(theirs) < len(theirs)


def test_reasons_agree_where_both_fail(scored, oracle):
    for name, mapping in [
        ("gopher_quality", GOPHER_REASONS),
        ("gopher_repetition", {}),
        ("c4_quality", {}),
        ("fineweb_quality", {}),
    ]:
        pairs = [
            (mapping.get(r, r), dr)
            for r, (ok, dr) in zip(scored[f"{name}_reason"], oracle[name], strict=True)
            if r is not None and not ok
        ]
        same = sum(a == b for a, b in pairs) / len(pairs)
        assert same >= 0.99, f"{name}: reasons agree on {same:.4f}"
    # a passing document has a null reason
    assert all(
        (r is None) == p
        for r, p in zip(scored["c4_quality_reason"], scored["c4_quality_pass"], strict=True)
    )


def test_c4_clean_text_matches_datatrove(docs, oracle):
    stage = C4Clean(C4Clean.Params(keep_original="raw"), stage_id="c4", seed=0)
    table = pa.table({"id": [d["id"] for d in docs], "text": [d["text"] for d in docs]})
    out = stage.process(table).kept
    cleaned = out.column("text").to_pylist()
    pairs = [(a, b) for a, b in zip(cleaned, oracle["c4_text"], strict=True) if b is not None]
    assert len(pairs) > 100
    assert sum(a == b for a, b in pairs) / len(pairs) >= 0.999
    assert out.column("raw").to_pylist() == [d["text"] for d in docs]
    removed = out.column("c4_removed_lines").to_pylist()
    for r, d, c in zip(removed, docs, cleaned, strict=True):
        assert r + (len(c.split("\n")) if c else 0) == len(d["text"].splitlines())


def test_words_close_to_spacy(docs):
    from datatrove.utils.word_tokenizers import load_word_tokenizer

    spacy_words = load_word_tokenizer("en")
    sample = docs[:: len(docs) // 400]
    ours = tokenize(pa.array([d["text"] for d in sample], pa.large_string())).to_lists()
    theirs = [spacy_words.word_tokenize(d["text"]) for d in sample]
    identical = sum(a == b for a, b in zip(ours, theirs, strict=True)) / len(sample)
    assert identical >= 0.85
    total_ours, total_theirs = sum(map(len, ours)), sum(map(len, theirs))
    assert abs(total_ours - total_theirs) / total_theirs < 0.005


def test_ngram_scans_exact():
    """Same words in, same numbers out as datatrove's n-gram functions.

    Words have equal length so datatrove's concatenated n-gram strings are unique
    (see docs/scorers.md for the one difference when they are not).
    """
    from datatrove.pipeline.filters.gopher_repetition_filter import (
        find_all_duplicate,
        find_top_duplicate,
        get_n_grams,
    )

    rng = random.Random(7)
    texts = []
    for _ in range(1500):
        vocab = [rng.choice("abcdefgh") * 2 for _ in range(rng.randint(1, 6))]
        texts.append(" ".join(rng.choice(vocab) for _ in range(rng.randint(0, 60))))
    words = TextBatch(pa.array(texts)).words
    lists = words.to_lists()
    grams = NGrams(words)
    for n in range(2, 11):
        top, dup = grams.top_chars(n), grams.duplicated_chars(n)
        for i, w in enumerate(lists):
            ngrams = get_n_grams(w, n)
            assert top[i] == (find_top_duplicate(ngrams) if ngrams else 0)
            assert dup[i] == find_all_duplicate(w, n)


def test_splitlines_matches_python():
    texts = ["", "a", "a\n", "\n", "a\r\nb\n\n", "x\ny\x85z\u2028", "\r\r", "a\x0bb\x0c"]
    lines = splitlines(pa.array(texts, pa.large_string())).to_lists()
    assert lines == [t.splitlines() for t in texts]


def test_thresholds_are_params_and_stats_allow_reselection(docs):
    from winnow.stages.filter import Filter

    table = pa.table({"id": [d["id"] for d in docs], "text": [d["text"] for d in docs]})
    scored = FineWebQuality().score(TextBatch(table.column("text")))
    for name, values in scored.items():
        table = table.append_column(name, values)
    # re-select with the write-up's char_duplicates_ratio (0.1) on the stored statistics ...
    keep = (
        "fineweb_line_punct_ratio >= 0.12 AND fineweb_short_line_ratio <= 0.67 "
        "AND fineweb_char_dup_ratio <= 0.1 AND fineweb_list_ratio <= 0.3"
    )
    stage = Filter(Filter.Params(keep=keep), stage_id="f", seed=0)
    stage.setup()
    reselected = stage.process(table).kept.column("id").to_pylist()
    # ... gives what re-scoring with that threshold gives
    loose = FineWebQuality(FineWebQuality.Params(char_duplicates_ratio=0.1))
    passed = loose.score(TextBatch(table.column("text")))["fineweb_quality_pass"].to_pylist()
    assert reselected == [d["id"] for d, ok in zip(docs, passed, strict=True) if ok]
    assert len(reselected) > sum(scored["fineweb_quality_pass"].to_pylist())
    # a rule is disabled with null
    batch = TextBatch(table.column("text"))
    off = GopherQuality(GopherQuality.Params(min_doc_words=None)).score(batch)
    assert "short_doc" not in set(off["gopher_quality_reason"].to_pylist())


BAD_TEXTS = [
    "",
    "   \n\t \n",
    "#$%^&*()!!! ... ---",
    None,
    "Ελληνικά και English μαζί. 日本語の文章です。 Русский текст тоже здесь.\n" * 20,
    "\x00\x01 control \x7f chars",
]


def test_bad_inputs_do_not_crash_and_score_sensibly():
    batch = TextBatch(pa.array(BAD_TEXTS))
    for scorer in (GopherQuality(), GopherRepetition(), C4Quality(), FineWebQuality()):
        cols = scorer.score(batch)
        assert all(len(v) == len(BAD_TEXTS) for v in cols.values())
        passed = cols[f"{scorer.name}_pass"].to_pylist()
        reasons = cols[f"{scorer.name}_reason"].to_pylist()
        if scorer.name == "gopher_repetition":  # as datatrove: only empty texts always fail
            assert passed[0] is False and reasons[0] == "empty" and passed[1] is True
        else:  # empty, blank and symbol-only texts fail, with a reason
            assert passed[:4] == [False] * 4, scorer.name
            assert all(r is not None for r in reasons[:4])
        for name, values in cols.items():
            if pa.types.is_floating(values.type):
                assert all(v is None or v == v for v in values.to_pylist()), name  # no NaN


@pytest.mark.slow
def test_ten_megabyte_single_line_documents_are_scored():
    """Huge one-line documents finish and fail (their CPU time is in
    ``benchmarks/quality.py``, section huge)."""
    rng = random.Random(0)
    words = "the quick brown fox jumps over a lazy dog while data flows".split()
    big = " ".join(rng.choice(words) for _ in range(1_900_000))[:10_000_000]
    stage = all_heuristics()
    for text in (big, "x" * 10_000_000, "ab-" * 300_000):
        out = stage.process(pa.table({"id": ["a"], "text": [text]})).kept.to_pylist()[0]
        assert out["gopher_quality_pass"] is False and out["fineweb_quality_pass"] is False


def test_score_params_validated_up_front():
    def pipeline(params):
        return {
            "name": "t",
            "input": {"path": "x"},
            "output": {"dir": "y"},
            "stages": [{"id": "s", "use": "score", "params": params}],
        }

    with pytest.raises(ConfigError, match=r"scorers\[0\]\.params\.min_doc_wordz: unknown key"):
        parse_pipeline(
            pipeline({"scorers": [{"use": "gopher_quality", "params": {"min_doc_wordz": 1}}]})
        )
    with pytest.raises(ConfigError, match="unknown scorer 'gopher'"):
        parse_pipeline(pipeline({"scorers": [{"use": "gopher"}]}))
    with pytest.raises(ConfigError, match="already written"):
        parse_pipeline(pipeline({"scorers": [{"use": "c4_quality"}, {"use": "c4_quality"}]}))
    spec = parse_pipeline(
        pipeline({"scorers": [{"use": "fineweb_quality", "params": {"new_line_ratio": 0.5}}]})
    )
    assert spec.stages[0].params["scorers"][0]["params"]["new_line_ratio"] == 0.5


def test_fineweb_pipeline_validates():
    root = Path(__file__).resolve().parents[1]
    spec = load_pipeline(root / "pipelines" / "fineweb.yaml")
    assert [s.use for s in spec.stages].count("score") >= 2
