"""normalize, filter, sample, select and the datatrove adapter, against hand-written
expectations and brute-force references."""

import random

import pyarrow as pa
import pytest
from arrow_files import write_parts

from winnow.stages import resolve
from winnow.stages.base import Materialized
from winnow.stages.filter import Filter
from winnow.stages.normalize import Normalize
from winnow.stages.sample import Sample
from winnow.stages.select import Select


def make(cls, **params):
    stage = cls(cls.Params(**params), stage_id="s", seed=123)
    if hasattr(stage, "setup"):
        stage.setup()
    return stage


def test_normalize_expected_strings():
    table = pa.table(
        {
            "id": ["a", "b", "c", "d"],
            "text": [
                "Cafe\u0301\u00a0menu \r\nline two   \n\n\n\n\nend",
                "zero\u200bwidth\x00ctrl\x07",
                "  keep    inner   spaces  ",
                None,
            ],
        }
    )
    out = make(Normalize).process(table)
    assert out.kept.column("text").to_pylist() == [
        "Café menu\nline two\n\nend",
        "zerowidthctrl",
        "keep    inner   spaces",
        None,
    ]
    assert out.stats["changed_docs"] == 3
    collapsed = make(Normalize, collapse_spaces=True).process(table)
    assert collapsed.kept.column("text")[2].as_py() == "keep inner spaces"
    nfkc = make(Normalize, form="NFKC").process(pa.table({"id": ["x"], "text": ["ﬁ ①"]}))
    assert nfkc.kept.column("text")[0].as_py() == "fi 1"


def test_filter_splits_with_reason_and_nulls_rejected():
    table = pa.table({"id": ["a", "b", "c"], "text": ["four words are here", "two words", None]})
    out = make(Filter, keep="len(string_split(text, ' ')) >= 3", reason="short").process(table)
    assert out.kept.column("id").to_pylist() == ["a"]
    assert out.rejected.column("id").to_pylist() == ["b", "c"]
    assert set(out.rejected.column("reason").to_pylist()) == {"short"}


def test_sample_is_seeded_nested_and_near_fraction():
    ids = [f"doc-{i}" for i in range(20000)]
    table = pa.table({"id": ids, "text": ["x"] * len(ids)})
    half = set(make(Sample, fraction=0.5).process(table).kept.column("id").to_pylist())
    tenth = set(make(Sample, fraction=0.1).process(table).kept.column("id").to_pylist())
    assert abs(len(half) - 10000) < 4 * (20000 * 0.25) ** 0.5
    assert tenth <= half
    shuffled = table.take(random.Random(1).sample(range(len(ids)), len(ids)))
    again = set(make(Sample, fraction=0.5).process(shuffled).kept.column("id").to_pylist())
    assert again == half
    other_seed = Sample(Sample.Params(fraction=0.5), stage_id="s", seed=999)
    assert set(other_seed.process(table).kept.column("id").to_pylist()) != half


def write_files(tmp_path, rows, n_files):
    return Materialized(write_parts(tmp_path, rows, n_files))


def run_select(tmp_path, rows, n_files=3, **params):
    stage = Select(Select.Params(**params), stage_id="sel", seed=0)
    kept, rejected = [], []
    for out in stage.run(write_files(tmp_path, rows, n_files), tmp_path):
        kept += out.kept.column("id").to_pylist()
        rejected += out.rejected.column("id").to_pylist()
    assert len(kept) + len(rejected) == len(rows)
    return set(kept)


def corpus(n=600, seed=0):
    rng = random.Random(seed)
    return [
        {
            "id": f"d{i:04d}",
            "text": "w " * rng.randint(1, 50),
            "score": float(rng.randint(0, 40)),  # many ties: id breaks them
            "n_tokens": rng.randint(1, 100),
            "source": rng.choice(["web", "web", "web", "books", "code"]),
        }
        for i in range(n)
    ]


def brute_top(rows, k):
    return {r["id"] for r in sorted(rows, key=lambda r: (-r["score"], r["id"]))[:k]}


def test_select_top_fraction_matches_brute_force(tmp_path):
    rows = corpus()
    assert run_select(tmp_path, rows, by="score", fraction=0.25) == brute_top(rows, 150)
    assert run_select(tmp_path, rows, by="score", n=37) == brute_top(rows, 37)


def test_select_stratified_keeps_each_share(tmp_path):
    rows = corpus()
    expected = set()
    for source in ("web", "books", "code"):
        group = [r for r in rows if r["source"] == source]
        expected |= brute_top(group, int(0.2 * len(group) + 0.5))
    assert run_select(tmp_path, rows, by="score", fraction=0.2, stratify="source") == expected


def test_select_top_tokens_matches_brute_force(tmp_path):
    rows = corpus()
    budget = 0.3 * sum(r["n_tokens"] for r in rows)
    expected, total = set(), 0
    for r in sorted(rows, key=lambda r: (-r["score"], r["id"])):
        total += r["n_tokens"]
        if total <= budget:
            expected.add(r["id"])
    got = run_select(tmp_path, rows, by="score", token_fraction=0.3)
    assert got == expected


def test_select_is_independent_of_sharding(tmp_path):
    rows = corpus()
    a = run_select(tmp_path / "a", rows, n_files=1, by="score * -1", fraction=0.1)
    b = run_select(tmp_path / "b", list(reversed(rows)), n_files=5, by="score * -1", fraction=0.1)
    assert a == b


def test_select_by_a_uint64_hash_ranks_like_duckdb(tmp_path):
    """A random selection by ``hash(id)`` (UBIGINT, beyond float64's exact range)."""
    import duckdb

    rows = corpus()
    ids = [r["id"] for r in rows]
    hashed = duckdb.sql(f"SELECT id, hash(id) AS h FROM (SELECT unnest({ids}) AS id)").fetchall()
    expected = {i for i, _ in sorted(hashed, key=lambda t: (-float(t[1]), t[0]))[:60]}
    assert run_select(tmp_path, rows, by="hash(id)", n=60) == expected


def test_select_needs_exactly_one_budget():
    with pytest.raises(ValueError, match="exactly one"):
        Select.Params(by="score", fraction=0.1, n=3)


def test_datatrove_adapter_matches_datatrove_directly():
    from datatrove.data import Document
    from datatrove.pipeline.filters import GopherRepetitionFilter

    texts = [
        "the same line\n" * 30,
        "A perfectly ordinary paragraph about data curation, with varied words and ideas. "
        "It continues for a little while, describing several distinct things in turn.",
        "buy now " * 100,
    ]
    table = pa.table({"id": ["a", "b", "c"], "text": texts, "source": ["x", "y", "z"]})
    cls = resolve("datatrove:GopherRepetitionFilter", "t")
    out = make(cls).process(table)
    reference = GopherRepetitionFilter()
    expected = {}
    for i, t in zip(["a", "b", "c"], texts, strict=True):
        result = reference.filter(Document(text=t, id=i))
        expected[i] = result if isinstance(result, tuple) else (result, None)
    assert out.kept.column("id").to_pylist() == [i for i in "abc" if expected[i][0]]
    reasons = dict(
        zip(
            out.rejected.column("id").to_pylist(),
            out.rejected.column("reason").to_pylist(),
            strict=True,
        )
    )
    assert reasons == {i: expected[i][1] for i in "abc" if not expected[i][0]}
    assert out.kept.column("source").to_pylist() == [
        s for i, s in zip("abc", "xyz", strict=True) if expected[i][0]
    ]


def test_datatrove_formatter_rewrites_text():
    from datatrove.pipeline.formatters import FTFYFormatter

    broken = "The Mona Lisa doesnÃ¢â‚¬â„¢t have eyebrows."
    out = make(resolve("datatrove:FTFYFormatter", "t")).process(
        pa.table({"id": ["a"], "text": [broken]})
    )
    fixed = out.kept.column("text")[0].as_py()
    assert fixed == FTFYFormatter().format(broken) and fixed != broken
    assert "Ã" not in fixed
