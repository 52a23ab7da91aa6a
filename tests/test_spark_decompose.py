"""The native Spark ``decompose`` backend on a real ``local[2,3]`` session: bucket
files, concat files, manifest and kept parts byte-identical to the local stage's."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pyarrow as pa
import pytest
from arrow_files import write_parts
from test_decompose import SCHEMA, synthetic_docs

from winnow.ledger import StageCount
from winnow.runners.local import run_global_here
from winnow.stages.base import Materialized
from winnow.stages.decompose import Decompose

pytestmark = pytest.mark.spark


def files_of(folder: Path) -> dict[str, bytes]:
    return {
        str(f.relative_to(folder)): f.read_bytes() for f in sorted(folder.rglob("*")) if f.is_file()
    }


def run_both(tmp_path: Path, spark, data: Materialized, **params) -> dict:
    """The stage run locally (``run_global_here``) and by its Spark backend."""
    from winnow.spark.executor import spark_backend

    out = {}
    for name in ("local", "spark"):
        run = tmp_path / name
        stage = Decompose(Decompose.Params(**params), stage_id="dec", seed=7, run_dir=run)
        pass_dir = run / "stages" / "dec"
        pass_dir.mkdir(parents=True)
        if name == "local":
            count = run_global_here(stage, data, pass_dir, lambda: None)
        else:
            count = spark_backend(stage)(spark, stage, data, pass_dir)
        out[name] = (count, files_of(run / stage.params.dir), files_of(pass_dir))
    return out


def check_same(out: dict) -> None:
    (count_a, buckets_a, parts_a), (count_b, buckets_b, parts_b) = out["local"], out["spark"]
    assert count_b == count_a
    assert sorted(buckets_b) == sorted(buckets_a)
    assert buckets_b == buckets_a  # every shard file and manifest.json, byte for byte
    assert sorted(parts_b) == sorted(parts_a)
    assert parts_b == parts_a


def test_buckets_concat_and_kept_parts_match_local(tmp_path, spark, monkeypatch):
    """Several input parts, many shards per bucket, a concat length that is not a power
    of two, null sources, empty documents, repeated ids (with equal and unequal tokens),
    and kept output cut into several parts."""
    import winnow.stages.decompose as decompose

    monkeypatch.setattr(decompose, "CHUNK_TOKENS", 1500)  # several kept parts
    docs = synthetic_docs(n=150)
    for i in range(0, 30, 5):
        docs[i]["id"] = "same"
    docs[40] = {**docs[41]}  # same id, same tokens: input order decides
    files = write_parts(tmp_path / "in", docs, 3, SCHEMA)
    out = run_both(
        tmp_path,
        spark,
        Materialized(files),
        min_log2=2,
        max_log2=5,
        shard_tokens=100,
        concat_len=48,
    )
    check_same(out)
    count, buckets, parts = out["spark"]
    assert len(parts) > 2
    assert sum(name.startswith("concat/") for name in buckets) > 3
    assert sum(name.startswith("len_32/") for name in buckets) > 3
    assert isinstance(count, StageCount) and count.kept == len(docs)


def test_no_concat_one_shard_uint16(tmp_path, spark):
    docs = synthetic_docs(seed=2, n=60, vocab=1000)
    schema = SCHEMA.set(SCHEMA.get_field_index("tokens"), pa.field("tokens", pa.list_(pa.uint16())))
    files = write_parts(tmp_path / "in", docs, 2, schema)
    out = run_both(tmp_path, spark, Materialized(files), min_log2=3, max_log2=6, concat=False)
    check_same(out)
    assert '"token_dtype": "uint16"' in out["spark"][1]["manifest.json"].decode()


@pytest.mark.parametrize(
    "params",
    [
        {"mix": {"web": 2.5, "books": 0.5}},  # 0 to 3 copies
        {"mix": {"web": 1, "books": 9, "null": 0.5}, "mix_mode": "share"},
        {"randomize_long": True},
        {"randomize_long": True, "mix": {"books": 2}},
    ],
    ids=["repeat", "share", "randomize_long", "randomize_long-repeat"],
)
def test_mix_and_randomize_long_match_local(tmp_path, spark, monkeypatch, params):
    """Copies of a document written after all lower copies, in buckets and in the concat
    stream (whose chunks span copy boundaries), and seeded random pieces of documents
    longer than ``2**(max_log2 + 1)``; repeated ids draw the same copies and pieces."""
    import winnow.stages.decompose as decompose

    monkeypatch.setattr(decompose, "CHUNK_TOKENS", 2000)  # several chunks per copy
    docs = synthetic_docs(seed=4, n=100)
    docs[10]["id"] = docs[20]["id"] = docs[11]["id"]
    files = write_parts(tmp_path / "in", docs, 3, SCHEMA)
    out = run_both(
        tmp_path,
        spark,
        Materialized(files),
        min_log2=2,
        max_log2=4,
        shard_tokens=200,
        concat_len=40,
        **params,
    )
    check_same(out)
    mix = json.loads(out["spark"][1]["manifest.json"])["mix"]
    if mix is not None:  # some documents written more than once
        assert max(mix["factors"].values()) >= 2


def test_group_column_matches_local(tmp_path, spark):
    """``group_column`` (nulls among the values) is carried into every bucket and concat
    shard as ``group``, copies under ``mix`` included, as locally."""
    docs = synthetic_docs(seed=5, n=90)
    for i, d in enumerate(docs):
        d["skill"] = ["algebra", "geometry", None][i % 3]
    schema = SCHEMA.append(pa.field("skill", pa.string()))
    files = write_parts(tmp_path / "in", docs, 3, schema)
    out = run_both(
        tmp_path,
        spark,
        Materialized(files),
        min_log2=2,
        max_log2=5,
        shard_tokens=150,
        concat_len=40,
        mix={"web": 2},
        group_column="skill",
    )
    check_same(out)
    shard = next(v for k, v in out["spark"][1].items() if k.startswith("len_32/"))
    table = pa.ipc.open_file(pa.BufferReader(shard)).read_all()
    skill = {d["id"]: d["skill"] or "null" for d in docs}
    assert table["group"].to_pylist() == [skill[i] for i in table["doc_id"].to_pylist()]


def test_unknown_group_column_is_one_line(tmp_path, spark):
    from winnow.errors import InputError
    from winnow.spark.executor import spark_backend

    files = write_parts(tmp_path / "in", synthetic_docs(n=20), 1, SCHEMA)
    stage = Decompose(
        Decompose.Params(group_column="nope"), stage_id="dec", seed=7, run_dir=tmp_path
    )
    with pytest.raises(InputError, match="group_column: no column 'nope'"):
        spark_backend(stage)(spark, stage, Materialized(files), tmp_path / "pass")


def test_pipeline_runs_decompose_natively(tmp_path, spark, caplog):
    """Through ``SparkRunner``: no driver fallback, ``mix`` included."""
    from winnow.pipeline import parse_pipeline
    from winnow.runners.local import run_pipeline
    from winnow.spark.executor import SparkRunner

    docs = synthetic_docs(seed=3, n=80)
    write_parts(tmp_path / "in", docs, 2, SCHEMA)
    mixed = {"dir": "mixed", "mix": {"web": 2.0}}
    stages = [  # two branches: decompose drops the tokens
        {"id": "all", "use": "filter", "params": {"keep": "true"}},
        {"id": "dec", "use": "decompose", "params": {"min_log2": 2, "max_log2": 5}},
        {"id": "mixed", "use": "decompose", "after": ["all"], "params": mixed},
    ]

    def spec(out: str):
        return parse_pipeline(
            {
                "name": "t",
                "input": {"path": str(tmp_path / "in")},
                "output": {"dir": str(tmp_path / out)},
                "runner": {"progress": False},
                "stages": stages,
            }
        )

    local = run_pipeline(spec("local"), workers=1, progress=False)
    with caplog.at_level(logging.WARNING, logger="winnow.spark"):
        ledger = SparkRunner(spec("spark"), spark).run()
    assert "ran on the driver" not in caplog.text
    assert ledger.to_json() == local.to_json()
    for folder in ("buckets", "mixed", "stages", "data"):
        assert files_of(tmp_path / "spark" / folder) == files_of(tmp_path / "local" / folder)
