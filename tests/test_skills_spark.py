"""The skill stages on Spark (mapInArrow on local[2]) give the local runner's bytes."""

import json

import pytest
from skills_corpus import docstrings

from winnow.pipeline import parse_pipeline
from winnow.runners.local import run_pipeline

pytestmark = [pytest.mark.slow, pytest.mark.spark]
EMBEDDER = {"max_tokens": 64, "max_chunks": 1}


def spec(tmp_path, out):
    ref = str(tmp_path / "ref.jsonl")
    return parse_pipeline(
        {
            "name": "skills-spark",
            "input": {"path": str(tmp_path / "in")},
            "output": {"dir": str(tmp_path / out)},
            "runner": {"chunk_rows": 5, "progress": False},
            "stages": [
                {
                    "id": "sim",
                    "use": "embed_sim",
                    "params": {"reference": ref, "embedder": EMBEDDER, "keep_embeddings": True},
                },
                {
                    "id": "skills",
                    "use": "skills",
                    "params": {
                        "reference": ref,
                        "embedder": EMBEDDER,
                        "embedding_column": "embedding",
                    },
                },
                {"id": "dsir", "use": "dsir", "params": {"reference": ref}},
            ],  # fmt: skip
        }
    )


def test_skills_on_spark_match_local(tmp_path, spark):
    from winnow.spark.executor import SparkRunner

    net = docstrings("networking, email and internet protocols")
    pool = net[1:14:2] + docstrings("dates and times")[:6]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "pool.jsonl").write_text(
        "".join(json.dumps({"id": r["id"], "text": r["text"]}) + "\n" for r in pool)
    )
    (tmp_path / "ref.jsonl").write_text(
        "".join(json.dumps({"text": r["text"]}) + "\n" for r in net[0:12:2])
    )
    local = run_pipeline(spec(tmp_path, "local"), workers=1, progress=False)
    ledger = SparkRunner(spec(tmp_path, "spark"), spark).run()
    assert ledger.to_json() == local.to_json()
    data = {run: sorted((tmp_path / run / "data").glob("*")) for run in ("local", "spark")}
    assert data["local"] and [f.name for f in data["spark"]] == [f.name for f in data["local"]]
    for ours, theirs in zip(data["local"], data["spark"], strict=True):
        assert ours.read_bytes() == theirs.read_bytes()
    graphs = {run: (tmp_path / run / "skills" / "skills") for run in ("local", "spark")}
    [graph] = graphs["local"].iterdir()  # the same content-addressed graph, same bytes
    for f in graph.iterdir():
        assert f.read_bytes() == (graphs["spark"] / graph.name / f.name).read_bytes()
