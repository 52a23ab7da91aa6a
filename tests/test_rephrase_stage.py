"""The rephrase stage end to end with the real SmolLM2-135M-Instruct (int4 ONNX) under
the real local runner: 32 short documents x 2 styles, greedy.

One reference run (2 workers, batch 4) is compared byte for byte with a run on
1 worker with batch 8, and with a run killed by ``kill -9`` mid-chunk (batch 2) and
resumed from its request cache. (Batch 1 vs 8 at the backend: test_llm_backends.)
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest
from llm_server import TOPICS, model_dir

from winnow.pipeline import parse_pipeline
from winnow.rephrase.assemble import PROVENANCE
from winnow.runners.local import run_pipeline

pytestmark = pytest.mark.slow

STYLES = ["wrap_easy", "wrap_qa"]
KNOWN_REASONS = {
    "empty",
    "repetition",
    "truncated",
    "refusal",
    "unparsable_qa",
    "echo",
    "too_short",
    "too_long_output",
}


def write_docs(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "docs.jsonl", "w") as f:
        for i in range(32):
            text = f"{TOPICS[i % len(TOPICS)]} Note {i}."
            f.write(json.dumps({"id": f"d{i:02d}", "text": text, "source": "web"}) + "\n")


def spec(root: Path, run: str, *, workers=1, batch_size=4, extra_stages=()) -> dict:
    return {
        "name": "rephrase-test",
        "input": {"path": str(root / "in" / "docs.jsonl")},
        "output": {"dir": str(root / run)},
        "runner": {"chunk_rows": 16, "progress": False},
        "stages": [
            {
                "id": "rp",
                "use": "rephrase",
                "params": {
                    "styles": STYLES,
                    "max_tokens": 40,
                    "backend": {"kind": "onnx", "batch_size": batch_size, "threads": 2 // workers},
                },
                "resources": {"workers": workers},
            },
            *extra_stages,
        ],
    }


def arrow_bytes(run: Path, sub: str) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted((run / sub).rglob("*.arrow"))}


def read_all(run: Path, sub: str) -> pa.Table:
    tables = [pa.ipc.open_file(str(p)).read_all() for p in sorted((run / sub).rglob("*.arrow"))]
    return pa.concat_tables(tables)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    model_dir()  # the one-off conversion, outside the timed runs
    root = tmp_path_factory.mktemp("rephrase")
    write_docs(root / "in")
    ledger = run_pipeline(parse_pipeline(spec(root, "ref", workers=2)), workers=2, progress=False)
    return root, ledger


def test_provenance_and_ledger(reference):
    root, ledger = reference
    rp = ledger.stages["rp"]
    assert rp.rows_in == 32 and rp.created == 64
    assert rp.rows_in + rp.created == rp.kept + sum(rp.rejected.values())
    data = read_all(root / "ref", "data")
    rows = data.to_pylist()
    parents = [r for r in rows if r["parent_id"] is None]
    generated = [r for r in rows if r["parent_id"] is not None]
    assert [r["id"] for r in parents] == [f"d{i:02d}" for i in range(32)]
    assert len(generated) == rp.kept - 32 > 0
    for r in generated:
        assert all(r[name] is not None for name in PROVENANCE), r
        assert r["id"] == f"{r['parent_id']}~{r['rephrase_style']}~0"
        assert r["source"] == f"rephrase:{r['rephrase_style']}"
        assert r["rephrase_model"].startswith("smollm2-135m-instruct@")
        assert len(r["rephrase_request_keys"]) == 64
        assert json.loads(r["rephrase_sampling"])["temperature"] == 0.0
    # each generated row follows its parent
    order = [r["parent_id"] or r["id"] for r in rows]
    assert order == sorted(order)
    stats = rp.stats
    assert stats["requests"] == 64 and stats["backend_requests"] == 64
    assert stats["cache_hits"] == 0 and stats["completion_tokens"] > 0
    # the tiny model's real failures, each with its reason
    assert sum(rp.rejected.values()) > 0 and set(rp.rejected) <= KNOWN_REASONS
    rejected = read_all(root / "ref", "rejected/rp")
    assert rejected.num_rows == sum(rp.rejected.values())
    assert set(rejected.column("reason").to_pylist()) == set(rp.rejected)


def test_one_worker_and_batch_8_give_the_same_bytes(reference):
    root, ledger = reference
    other = run_pipeline(
        parse_pipeline(spec(root, "b8", workers=1, batch_size=8)), workers=1, progress=False
    )
    assert other.stages["rp"].rejected == ledger.stages["rp"].rejected  # stable reasons
    assert arrow_bytes(root / "b8", "data") == arrow_bytes(root / "ref", "data")
    assert arrow_bytes(root / "b8", "rejected") == arrow_bytes(root / "ref", "rejected")


def _cached_lines(run: Path) -> int:
    files = (run / "stages" / "rp" / "requests").glob("*.jsonl")
    return sum(f.read_bytes().count(b"\n") for f in files)


def test_kill_mid_chunk_then_resume(reference):
    root, _ = reference
    run = root / "killed"
    config = root / "killed.json"
    config.write_text(json.dumps(spec(root, "killed", batch_size=2)))
    script = (
        "import json, sys\n"
        "from winnow.pipeline import parse_pipeline\n"
        "from winnow.runners.local import run_pipeline\n"
        "run_pipeline(parse_pipeline(json.load(open(sys.argv[1]))), workers=1, progress=False)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(config)], start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while _cached_lines(run) < 6:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    cached = _cached_lines(run)
    assert 6 <= cached < 64
    assert not (run / "stages" / "rp" / "_SUCCESS").exists()
    ledger = run_pipeline(parse_pipeline(spec(root, "killed", batch_size=2)), progress=False)
    stats = ledger.stages["rp"].stats
    assert stats["backend_requests"] == 64 - cached
    assert stats["cache_hits"] == cached
    assert _cached_lines(run) == 64
    assert arrow_bytes(run, "data") == arrow_bytes(root / "ref", "data")
    assert arrow_bytes(run, "rejected") == arrow_bytes(root / "ref", "rejected")

    # an edit downstream reuses the rephrase pass: nothing is generated again
    parts = {p: p.stat().st_mtime_ns for p in (run / "stages" / "rp").glob("part-*.arrow")}
    downstream = [{"id": "short", "use": "filter", "params": {"keep": "length(text) < 400"}}]
    run_pipeline(
        parse_pipeline(spec(root, "killed", batch_size=2, extra_stages=downstream)),
        progress=False,
    )
    assert {p: p.stat().st_mtime_ns for p in parts} == parts
    assert _cached_lines(run) == 64


@pytest.mark.parametrize(
    "mode, style",
    [("column", "nemotron_knowledge_list"), ("replace", "prox_doc"), ("replace", "prox_chunk")],
)
def test_column_and_replace_modes_reconcile(tmp_path, mode, style):
    root = tmp_path
    run = f"{mode}-{style}"
    config = spec(root, run)
    config["input"]["path"] = str(root / "in6" / "docs.jsonl")
    (root / "in6").mkdir()
    inputs = {
        f"p{i}": f"Home | Login | Cart\n{topic}\nCopyright 2024. Share on Facebook"
        for i, topic in enumerate(TOPICS[:6])
    }
    with open(root / "in6" / "docs.jsonl", "w") as f:
        for doc_id, text in inputs.items():
            f.write(json.dumps({"id": doc_id, "text": text}) + "\n")
    config["stages"][0]["params"].update(styles=[style], mode=mode, max_tokens=24)
    ledger = run_pipeline(parse_pipeline(config), progress=False)
    rp = ledger.stages["rp"]
    assert rp.created == 0 and rp.rows_in == 6
    assert rp.kept + sum(rp.rejected.values()) == 6
    data = read_all(root / run, "data").to_pylist()
    assert all(r["rephrase_style"] == style and r["rephrase_request_keys"] for r in data)
    if mode == "column":
        assert rp.kept == 6
        for r in data:
            assert (r["rephrased"] is None) == (r["rephrased_reason"] is not None)
            if r["rephrased"] is not None:
                assert all(line.startswith("- ") for line in r["rephrased"].splitlines())
    else:  # ProX: only drop_doc() rejects; the tiny model's unusable programs keep the text
        assert set(rp.rejected) <= {"prox_drop_doc"}
        assert rp.stats["prox_fallback"] > 0
        for r in data:  # a kept document is the input, or the input with lines removed
            lines = inputs[r["id"]].split("\n")
            if style == "prox_doc" or r["text"] == inputs[r["id"]]:
                assert r["text"] == inputs[r["id"]]
            else:
                assert all(line in lines for line in r["text"].split("\n"))
