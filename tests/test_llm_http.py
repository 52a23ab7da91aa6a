"""The OpenAI-compatible backend against a real model on loopback: a small server
(``llm_server.LoopbackServer``, 127.0.0.1 only) runs SmolLM2 through the ONNX backend.
Faults are injected by the server into the next requests."""

import json
import os
import time

import pyarrow as pa
import pytest
from llm_server import LoopbackServer, dead_url, onnx_backend

from winnow.errors import ConfigError, WinnowError
from winnow.llm.base import Request
from winnow.llm.openai import OpenAIBackend
from winnow.pipeline import parse_pipeline
from winnow.runners.local import run_pipeline

pytestmark = pytest.mark.slow

PROMPTS = [
    "Say hello to a friend.",
    "Name a colour.",
    "What is the capital of France?",
    "Write one sentence about rain.",
]


def requests(max_tokens=24):
    return [Request((("user", p),), max_tokens, seed=i) for i, p in enumerate(PROMPTS)]


@pytest.fixture(scope="module")
def server():
    with LoopbackServer(onnx_backend()) as srv:
        yield srv


def client(server, **over) -> OpenAIBackend:
    options = {"concurrency": 4, "timeout": 20.0, "attempts": 3, "backoff": 0.01}
    return OpenAIBackend(server.url, **{**options, **over})


def test_same_greedy_outputs_as_in_process(server):
    direct = onnx_backend().generate(requests())
    http = client(server)
    assert http.model == "smollm2-135m-instruct"  # from GET /v1/models
    over_http = http.generate(requests())
    assert [r.text for r in over_http] == [r.text for r in direct]
    assert [r.finish_reason for r in over_http] == [r.finish_reason for r in direct]
    assert [r.completion_tokens for r in over_http] == [r.completion_tokens for r in direct]
    assert all(r.attempts == 1 and r.error is None for r in over_http)


@pytest.mark.parametrize("fault", ["500", "reset", "stall"])
def test_faults_are_retried_and_succeed(server, fault):
    expected = onnx_backend().generate(requests(12)[:1])[0].text
    http = client(server, concurrency=1, timeout=1.0)
    server.stall_seconds = 2.5
    server.faults = [fault]
    (result,) = http.generate(requests(12)[:1])
    assert (result.error, result.attempts, result.text) == (None, 2, expected)
    assert http.stats.retries == 1


def test_400_and_context_overflow_are_bad_requests(server):
    http = client(server, concurrency=1)
    server.faults = ["400"]
    (injected,) = http.generate(requests(8)[:1])
    assert (injected.error, injected.attempts) == ("bad_request", 1)
    # a real overflow: the server's model rejects prompt + max_tokens > context
    (overflow,) = http.generate([Request((("user", "hi"),), 100_000)])
    assert overflow.error == "bad_request" and "8192" in overflow.detail


def _table():
    return {"id": [f"d{i}" for i in range(4)], "text": PROMPTS}


def _spec(tmp_path, backend: dict, **params) -> dict:
    tmp_path.joinpath("in").mkdir(parents=True, exist_ok=True)
    with open(tmp_path / "in" / "docs.jsonl", "w") as f:
        for i, text in zip(_table()["id"], _table()["text"], strict=True):
            f.write(json.dumps({"id": i, "text": text}) + "\n")
    stage = {"styles": ["wrap_easy"], "max_tokens": 12, "backend": backend, **params}
    return {
        "name": "http",
        "input": {"path": str(tmp_path / "in" / "docs.jsonl")},
        "output": {"dir": str(tmp_path / "run")},
        "runner": {"progress": False},
        "stages": [{"id": "rp", "use": "rephrase", "params": stage}],
    }


def test_dead_server_fails_the_stage_within_attempts_times_timeout(tmp_path):
    backend = {"kind": "openai", "base_url": dead_url(), "model": "m"}
    backend.update(attempts=2, timeout=1.0, backoff=0.05)
    start = time.monotonic()
    with pytest.raises(WinnowError, match=r"stage 'rp'.*4 of 4 requests failed.*connection"):
        run_pipeline(parse_pipeline(_spec(tmp_path, backend)), progress=False)
    assert time.monotonic() - start < 2 * 1.0 + 3.0


def test_error_rate_above_max_fails_the_chunk(server, tmp_path):
    backend = {"kind": "openai", "base_url": server.url, "attempts": 1, "concurrency": 1}
    server.faults = ["500"]
    with pytest.raises(WinnowError, match=r"1 of 4 requests failed.*max_error_rate 0.2"):
        run_pipeline(parse_pipeline(_spec(tmp_path, backend, max_error_rate=0.2)), progress=False)
    server.faults = ["500"]
    spec = _spec(tmp_path, backend, max_error_rate=0.5)
    ledger = run_pipeline(parse_pipeline(spec), progress=False, force=True)
    assert ledger.stages["rp"].rejected.get("backend_error") == 1


def test_api_key_comes_from_the_environment_and_is_never_exposed(server, monkeypatch):
    with pytest.raises(ConfigError, match="WINNOW_TEST_KEY"):
        client(server, api_key_env="WINNOW_TEST_KEY")
    monkeypatch.setenv("WINNOW_TEST_KEY", "sekrit-123")
    http = client(server, api_key_env="WINNOW_TEST_KEY")
    server.expected_key = "sekrit-123"
    try:
        (ok,) = http.generate(requests(4)[:1])
        monkeypatch.setenv("WINNOW_TEST_KEY", "wrong")
        (denied,) = http.generate(requests(4)[:1])
    finally:
        server.expected_key = None
    assert ok.error is None
    assert denied.error == "backend_error" and "HTTP 401" in denied.detail
    shown = json.dumps(http.info()) + repr(vars(http))
    assert "sekrit" not in shown and "wrong" not in shown


def test_stage_over_http_matches_the_in_process_stage(server, tmp_path):
    http = _spec(tmp_path / "h", {"kind": "openai", "base_url": server.url})
    local = _spec(tmp_path / "l", {"kind": "onnx"})
    run_pipeline(parse_pipeline(http), progress=False)
    run_pipeline(parse_pipeline(local), progress=False)

    def texts(root):
        files = sorted((root / "run" / "data").glob("*.arrow"))
        table = pa.concat_tables(pa.ipc.open_file(str(f)).read_all() for f in files)
        return table.select(["id", "text", "parent_id"]).to_pylist()

    assert texts(tmp_path / "h") == texts(tmp_path / "l")
    assert os.listdir(tmp_path / "h" / "run" / "stages" / "rp" / "requests")


def _data_bytes(root) -> dict[str, bytes]:
    files = sorted((root / "run" / "data").glob("*.arrow"))
    return {f.name: f.read_bytes() for f in files}


@pytest.mark.spark
def test_spark_map_stage_over_http_matches_local(server, tmp_path, spark):
    """``mapInArrow`` tasks on ``local[2]`` call the loopback server; same bytes as the
    local runner, and the executors share the request cache in the run directory."""
    from winnow.spark.executor import SparkRunner

    backend = {"kind": "openai", "base_url": server.url, "concurrency": 2}
    local = _spec(tmp_path / "local", backend)
    on_spark = _spec(tmp_path / "spark", backend)
    run_pipeline(parse_pipeline(local), progress=False)
    sent = server.completions
    SparkRunner(parse_pipeline(on_spark), spark).run()
    assert server.completions == sent + 4  # the executors called the server
    assert _data_bytes(tmp_path / "spark") == _data_bytes(tmp_path / "local")
    # redo the pass: every request is a cache hit, none reaches the server again
    folder = tmp_path / "spark" / "run" / "stages" / "rp"
    for done in [*folder.glob("part-*"), folder / "_SUCCESS"]:
        done.unlink()
    SparkRunner(parse_pipeline(on_spark), spark).run()
    assert server.completions == sent + 4
    assert _data_bytes(tmp_path / "spark") == _data_bytes(tmp_path / "local")
