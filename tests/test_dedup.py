"""exact_dedup and minhash_dedup: keep policies, reasons, invariance to sharding and
order, and clusters checked against brute-force Jaccard."""

from __future__ import annotations

import datetime as dt
import random

import numpy as np
import pyarrow as pa
import pytest
from arrow_files import write_parts
from datasketch.lsh import _optimal_param
from pydantic import ValidationError
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from winnow.errors import InputError
from winnow.kernels.minhash import shingles_py
from winnow.sample_text import real_documents
from winnow.stages import builtin_stages
from winnow.stages.base import Materialized
from winnow.stages.exact_dedup import ExactDedup
from winnow.stages.minhash_dedup import MinhashDedup


def materialize(tmp_path, rows: list[dict], n_files: int, name: str = "in") -> Materialized:
    """Write ``rows`` round-robin into ``n_files`` Arrow IPC files."""
    return Materialized(write_parts(tmp_path, rows, n_files, prefix=f"{name}-{n_files}"))


def run(cls, data, tmp_path, **params):
    stage = cls(cls.Params(**params), stage_id="dedup", seed=0)
    outputs = list(stage.run(data, tmp_path / "work"))
    assert len(outputs) == len(data.files)
    for out, table in zip(outputs, data.tables(), strict=True):  # ledger per chunk
        assert out.kept.num_rows + out.rejected.num_rows == table.num_rows
        assert set(out.kept["id"].to_pylist()) <= set(table["id"].to_pylist())
    return outputs


def summary(outputs, columns: tuple[str, ...]) -> tuple[list, list]:
    """Order-free view: kept rows (id + added columns) and rejected (id, reason)."""
    kept = pa.concat_tables([o.kept for o in outputs])
    rejected = pa.concat_tables([o.rejected for o in outputs])
    k = sorted(zip(*(kept[c].to_pylist() for c in ("id", *columns)), strict=True))
    r = sorted(zip(rejected["id"].to_pylist(), rejected["reason"].to_pylist(), strict=True))
    return k, r


def test_registered():
    stages = builtin_stages()
    assert stages["exact_dedup"] is ExactDedup and stages["minhash_dedup"] is MinhashDedup


# --------------------------------------------------------------------------- exact

ROWS = [
    {"id": "d", "text": "Hello world", "url": "http://a.org/x", "score": 0.9,
     "date": dt.date(2021, 1, 1)},
    {"id": "a", "text": "Hello world", "url": "https://a.org/x", "score": 0.5,
     "date": dt.date(2020, 1, 1)},
    {"id": "b", "text": "Hello world", "url": None, "score": 0.9, "date": None},
    {"id": "c", "text": "hello   WORLD", "url": None, "score": None, "date": dt.date(2019, 1, 1)},
    {"id": "e", "text": "Hello, world!", "url": "http://b.org", "score": 0.1,
     "date": dt.date(2022, 1, 1)},
    {"id": "f", "text": "something else", "url": "http://b.org", "score": 0.2,
     "date": dt.date(2018, 1, 1)},
]  # fmt: skip


def test_exact_keep_policies(tmp_path):
    data = materialize(tmp_path, ROWS, 2)
    kept, rejected = summary(run(ExactDedup, data, tmp_path), ("dup_count",))
    assert kept == [("a", 3), ("c", 1), ("e", 1), ("f", 1)]
    assert rejected == [("b", "exact_duplicate_of:a"), ("d", "exact_duplicate_of:a")]

    # highest score: b and d tie at 0.9 -> lowest id b wins.
    out = run(ExactDedup, data, tmp_path, keep="highest_score", keep_column="score")
    assert summary(out, ("dup_count",))[0][:2] == [("b", 3), ("c", 1)]
    # oldest: a (2020) beats d (2021); b's null date sorts last.
    out = run(ExactDedup, data, tmp_path, keep="oldest", keep_column="date")
    assert summary(out, ())[1] == [("b", "exact_duplicate_of:a"), ("d", "exact_duplicate_of:a")]


def test_exact_null_scores_lose(tmp_path):
    rows = [
        {"id": "a", "text": "x", "score": None},
        {"id": "b", "text": "x", "score": -5.0},
    ]
    out = run(ExactDedup, materialize(tmp_path, rows, 1), tmp_path, keep="highest_score",
              keep_column="score")  # fmt: skip
    assert summary(out, ())[1] == [("a", "exact_duplicate_of:b")]


@pytest.mark.parametrize(
    "params,groups",
    [
        ({"normalize": "lower_space"}, [{"a", "b", "c", "d"}]),
        ({"normalize": "minhash"}, [{"a", "b", "c", "d", "e"}]),
        ({"normalize": "minhash", "hash_bits": 64}, [{"a", "b", "c", "d", "e"}]),
        ({"column": "url"}, [{"e", "f"}]),  # null urls are never duplicates
        ({"sql": "regexp_replace(url, '^https?://', '')"}, [{"a", "d"}, {"e", "f"}]),
    ],
)
def test_exact_keys(tmp_path, params, groups):
    kept, rejected = summary(run(ExactDedup, materialize(tmp_path, ROWS, 3), tmp_path, **params),
                             ("dup_count",))  # fmt: skip
    counts = dict(kept)
    for group in groups:
        winner = min(group)
        assert counts[winner] == len(group)
        assert {(i, f"exact_duplicate_of:{winner}") for i in group - {winner}} <= set(rejected)
    assert len(rejected) == sum(len(g) - 1 for g in groups)


def test_exact_invariant_to_sharding_and_order(tmp_path):
    rng = random.Random(4)
    rows = [{"id": f"r{i:03d}", "text": f"t{rng.randrange(40)}", "score": rng.random()}
            for i in range(300)]  # fmt: skip
    base = summary(run(ExactDedup, materialize(tmp_path, rows, 1, "a"), tmp_path,
                       keep="highest_score", keep_column="score"), ("dup_count",))  # fmt: skip
    rng.shuffle(rows)
    other = summary(run(ExactDedup, materialize(tmp_path, rows, 5, "b"), tmp_path,
                        keep="highest_score", keep_column="score", batch_rows=7),
                    ("dup_count",))  # fmt: skip
    assert base == other
    assert sum(c for _, c in base[0]) == 300 and len(base[0]) == 40


def test_errors(tmp_path):
    dupes = materialize(tmp_path, [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}], 1)
    with pytest.raises(InputError, match="unique"):
        run(ExactDedup, dupes, tmp_path)
    with pytest.raises(InputError, match="unique"):
        run(MinhashDedup, dupes, tmp_path)
    with pytest.raises(InputError, match="nope"):
        run(MinhashDedup, dupes, tmp_path, column="nope")
    with pytest.raises(ValidationError, match="keep_column"):
        ExactDedup.Params(keep="oldest")
    with pytest.raises(ValidationError, match="both"):
        MinhashDedup.Params(bands=None)
    with pytest.raises(ValidationError, match="num_perm"):
        MinhashDedup.Params(num_perm=64)
    with pytest.raises(ValidationError):
        MinhashDedup.Params(treshold=0.8)
    with pytest.raises(ValidationError, match="invalid SQL"):
        ExactDedup.Params(sql="lower(url")


def test_empty_input(tmp_path):
    schema = pa.schema([("id", pa.string()), ("text", pa.string())])
    path = tmp_path / "empty.arrow"
    with pa.ipc.new_file(str(path), schema) as writer:
        writer.write_table(schema.empty_table())
    data = Materialized([path], schema)
    (out,) = run(MinhashDedup, data, tmp_path)
    assert out.kept.column_names == ["id", "text", "cluster_id", "cluster_size"]
    (out,) = run(ExactDedup, data, tmp_path)
    assert out.kept.column_names == ["id", "text", "dup_count"]


# ---------------------------------------------------------------------------- near


@pytest.fixture(scope="module")
def corpus() -> list[dict]:
    """Real documents plus near-copies at edit rates of 1-30% (substitutions/deletions)."""
    rng = random.Random(7)
    docs = [d for d in real_documents(400) if len(d["text"].split()) >= 30][:150]
    rows = [{"id": d["id"], "text": d["text"], "score": rng.random()} for d in docs]
    for j, d in enumerate(docs[:60]):
        words = d["text"].split()
        for rate in (0.01, 0.05, 0.15, 0.3)[: 1 + j % 4]:
            kept = [w for w in words if rng.random() >= rate / 2]
            text = " ".join(f"w{rng.randrange(10**6)}" if rng.random() < rate / 2 else w
                            for w in kept)  # fmt: skip
            rows.append({"id": f"copy-{j:03d}-{rate}", "text": text, "score": rng.random()})
    return rows


def brute_force_jaccard(texts: list[str]) -> np.ndarray:
    sets = [set(shingles_py(t)) for t in texts]
    vocab = {s: i for i, s in enumerate(set().union(*sets))}
    r = [i for i, s in enumerate(sets) for _ in s]
    c = [vocab[x] for s in sets for x in s]
    inc = sparse.csr_matrix((np.ones(len(c)), (r, c)), shape=(len(sets), len(vocab)))
    inter = (inc @ inc.T).toarray()
    size = np.array([len(s) for s in sets])
    return inter / np.maximum(size[:, None] + size[None, :] - inter, 1)


def clusters_of(outputs) -> dict[str, str]:
    """doc id -> kept id of its cluster."""
    out = {}
    for o in outputs:
        out |= {i: i for i in o.kept["id"].to_pylist()}
        for i, reason in zip(o.rejected["id"].to_pylist(), o.rejected["reason"].to_pylist(),
                             strict=True):  # fmt: skip
            out[i] = reason.removeprefix("near_duplicate_of:")
    return out


@pytest.mark.parametrize("verify", ["none", "jaccard", "signature"])
def test_near_invariant_to_sharding_and_order(tmp_path, corpus, verify):
    cols = ("cluster_id", "cluster_size")
    base = summary(run(MinhashDedup, materialize(tmp_path, corpus, 1, "a"), tmp_path,
                       verify=verify), cols)  # fmt: skip
    shuffled = corpus[:]
    random.Random(1).shuffle(shuffled)
    other = summary(run(MinhashDedup, materialize(tmp_path, shuffled, 4, "b"), tmp_path,
                        verify=verify, batch_rows=37), cols)  # fmt: skip
    assert base == other
    assert len(base[1]) >= 40  # the copies are found
    for kept_id, cluster_id, size in base[0]:
        assert cluster_id <= kept_id and size >= 1


@pytest.mark.parametrize("verify", ["jaccard", "signature"])
def test_near_removals_against_brute_force(tmp_path, corpus, verify):
    ids = [r["id"] for r in corpus]
    index = {d: i for i, d in enumerate(ids)}
    jac = brute_force_jaccard([r["text"] for r in corpus])
    outputs = run(MinhashDedup, materialize(tmp_path, corpus, 3), tmp_path, verify=verify)
    cluster = clusters_of(outputs)
    removed = {d for d, k in cluster.items() if d != k}
    # Precision: a document is removed only for a kept one it really resembles.
    sims = [jac[index[d], index[cluster[d]]] for d in removed]
    assert min(sims) >= (0.8 if verify == "jaccard" else 0.65)
    assert np.mean(np.array(sims) >= 0.8) >= 0.9
    assert all(cluster[cluster[d]] == cluster[d] for d in removed)  # kept docs stay
    # Recall: of pairs at Jaccard >= 0.9 (all 14 bands miss with p < 1e-3), at least
    # one side is removed.
    close = np.argwhere(np.triu(jac >= 0.9, 1))
    assert len(close) >= 20
    assert all(ids[i] in removed or ids[j] in removed for i, j in close)


def test_near_without_verification_uses_components(tmp_path, corpus):
    """Unverified clusters are the connected components of the candidate graph."""
    ids = [r["id"] for r in corpus]
    jac = brute_force_jaccard([r["text"] for r in corpus])
    outputs = run(MinhashDedup, materialize(tmp_path, corpus, 2), tmp_path)
    cluster = clusters_of(outputs)
    close = np.argwhere(np.triu(jac >= 0.9, 1))
    assert all(cluster[ids[i]] == cluster[ids[j]] for i, j in close)
    _, truth = connected_components(sparse.csr_matrix(jac >= 0.3), directed=False)
    label = dict(zip(ids, truth, strict=True))
    assert all(label[d] == label[k] for d, k in cluster.items())


def test_near_keep_policy_and_columns(tmp_path, corpus):
    data = materialize(tmp_path, corpus, 2)
    outputs = run(MinhashDedup, data, tmp_path, keep="highest_score", keep_column="score")
    score = {r["id"]: r["score"] for r in corpus}
    cluster = clusters_of(outputs)
    for doc, kept in cluster.items():
        assert score[doc] <= score[kept]
    kept = pa.concat_tables([o.kept for o in outputs])
    assert kept.schema.field("cluster_size").type == pa.int64()
    sizes = dict(zip(kept["id"].to_pylist(), kept["cluster_size"].to_pylist(), strict=True))
    for k, size in sizes.items():
        assert size == sum(1 for v in cluster.values() if v == k)
    assert sum(o.stats["near_duplicates"] for o in outputs) == len(corpus) - kept.num_rows
    # Same input, params and seed: identical output chunks.
    again = run(MinhashDedup, data, tmp_path, keep="highest_score", keep_column="score")
    assert all(a.kept.equals(b.kept) and a.rejected.equals(b.rejected)
               for a, b in zip(outputs, again, strict=True))  # fmt: skip


def test_near_bands_from_threshold():
    params = MinhashDedup.Params(bands=None, rows=None, threshold=0.7, num_perm=64)
    assert params.lsh() == (*_optimal_param(0.7, 64, 0.5, 0.5), 64)
    assert MinhashDedup.Params().lsh() == (14, 8, 112)


def test_pipeline_run_is_deterministic_across_workers(tmp_path, corpus):
    """Both stages through the local runner: the ledger reconciles and 1 or 2 workers
    (and different chunking) give byte-identical outputs."""
    import json

    from winnow.pipeline import parse_pipeline
    from winnow.runners.local import run_pipeline

    (tmp_path / "in").mkdir()
    for f in range(3):
        copy = dict(corpus[f], id=f"exact-copy-{f}")
        lines = [json.dumps(r) for r in [*corpus[f::3], copy]]
        (tmp_path / "in" / f"part-{f}.jsonl").write_text("\n".join(lines) + "\n")

    def spec(out: str, chunk_rows: int) -> dict:
        return {
            "name": "dedup",
            "input": {"path": str(tmp_path / "in")},
            "output": {"dir": str(tmp_path / out)},
            "runner": {"chunk_rows": chunk_rows, "progress": False},
            "stages": [
                {"id": "nonempty", "use": "filter", "params": {"keep": "length(text) > 0"}},
                {"id": "exact", "use": "exact_dedup"},
                {"id": "near", "use": "minhash_dedup", "params": {"verify": "jaccard"}},
            ],
        }

    ledgers = [
        run_pipeline(parse_pipeline(spec("a", 50)), workers=1, progress=False),
        run_pipeline(parse_pipeline(spec("b", 170)), workers=2, progress=False),
    ]
    for ledger in ledgers:
        assert ledger.input_rows == len(corpus) + 3
        assert ledger.stages["exact"].rejected["exact_duplicate_of"] >= 3
        assert ledger.stages["near"].rejected["near_duplicate_of"] >= 40

    def read(folder):
        rows = [
            r
            for p in folder.rglob("*.arrow")
            for r in pa.ipc.open_file(str(p)).read_all().to_pylist()
        ]
        return sorted(rows, key=lambda r: r["id"])

    assert read(tmp_path / "a" / "data") == read(tmp_path / "b" / "data")
