"""The local runner end to end: accounting, determinism, resume, kill -9, bad input."""

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest

from winnow.errors import InputError, LedgerError
from winnow.pipeline import parse_pipeline
from winnow.runners.local import run_pipeline

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()


def write_corpus(folder: Path, n_docs=900, files=3, bad_lines=True) -> set[str]:
    """JSONL.gz files with known ids; returns the ids of the good rows."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = set()
    for f in range(files):
        lines = []
        for i in range(f, n_docs, files):
            words = [WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(5 + i % 40)]
            lines.append(json.dumps({"id": f"d{i}", "text": " ".join(words), "src": f"s{i % 3}"}))
            ids.add(f"d{i}")
        if bad_lines and f == 1:
            lines.insert(3, '{"id": "broken", "text": ')
            lines.insert(7, '{"id": "nulltext", "text": null}')
        data = ("\n".join(lines) + "\n").encode()
        (folder / f"part-{f}.jsonl.gz").write_bytes(gzip.compress(data, mtime=0))
    return ids


def pipeline(tmp_path: Path, out="run", stages=None, **over) -> dict:
    spec = {
        "name": "t",
        "input": {"path": str(tmp_path / "in")},
        "output": {"dir": str(tmp_path / out)},
        "runner": {"chunk_rows": 100, "progress": False},
        "stages": stages
        if stages is not None
        else [
            {"id": "norm", "use": "normalize"},
            {"id": "long", "use": "filter", "params": {"keep": "length(text) > 60"}},
            {"id": "half", "use": "sample", "params": {"fraction": 0.5}},
            {"id": "top", "use": "select", "params": {"by": "length(text)", "fraction": 0.5}},
            {"id": "tail", "use": "normalize"},
        ],
    }
    spec.update(over)
    return spec


def read_ids(folder: Path) -> list[str]:
    ids = []
    for path in sorted(folder.rglob("*.arrow")):
        with pa.memory_map(str(path)) as src:
            ids += pa.ipc.open_file(src).read_all().column("id").to_pylist()
    return ids


def tree_bytes(root: Path, sub: str) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted((root / sub).rglob("*.arrow"))}


def test_every_row_is_accounted_for(tmp_path):
    good = write_corpus(tmp_path / "in")
    ledger = run_pipeline(parse_pipeline(pipeline(tmp_path)), workers=1, progress=False)
    run = tmp_path / "run"
    kept = read_ids(run / "data")
    rejected = {s.name: read_ids(s) for s in (run / "rejected").iterdir()}
    assert len(kept) == len(set(kept))
    assert set(kept) | {i for ids in rejected.values() for i in ids if i in good} == good
    assert len(rejected["read"]) == 2  # the broken line and the null text
    assert ledger.input_rows == len(good) + 2
    assert ledger.output_rows == len(kept)
    assert ledger.stages["long"].rejected == {"filter_failed": len(rejected["long"])}
    assert ledger.stages["top"].rows_in == ledger.stages["half"].kept
    on_disk = json.loads((run / "ledger.json").read_text())
    assert on_disk["output_rows"] == len(kept)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["outputs"]["tail"]["rows"] == len(kept)
    assert manifest["seed"] == 0 and "pyarrow" in manifest["versions"]
    table = pa.ipc.open_file(str(next((run / "rejected" / "long").glob("*.arrow")))).read_all()
    assert {"stage", "reason", "src"} <= set(table.column_names)
    assert set(table.column("stage").to_pylist()) == {"long"}


def test_workers_1_and_2_give_identical_bytes(tmp_path):
    write_corpus(tmp_path / "in", n_docs=1500)
    run_pipeline(parse_pipeline(pipeline(tmp_path, out="w1")), workers=1, progress=False)
    run_pipeline(parse_pipeline(pipeline(tmp_path, out="w2")), workers=2, progress=False)
    for sub in ("data", "rejected"):
        a, b = tree_bytes(tmp_path / "w1", sub), tree_bytes(tmp_path / "w2", sub)
        assert a and a.keys() == b.keys()
        assert a == b


def test_rerun_skips_and_force_recomputes(tmp_path):
    write_corpus(tmp_path / "in")
    spec = parse_pipeline(pipeline(tmp_path))
    run_pipeline(spec, workers=1, progress=False)
    part = tmp_path / "run" / "stages" / "half" / "part-00000.arrow"
    before = part.stat().st_mtime_ns
    first = tree_bytes(tmp_path / "run", "data")
    run_pipeline(spec, workers=1, progress=False)
    assert part.stat().st_mtime_ns == before
    run_pipeline(spec, workers=1, force=True, progress=False)
    assert part.stat().st_mtime_ns != before
    assert tree_bytes(tmp_path / "run", "data") == first
    changed = parse_pipeline(pipeline(tmp_path, seed=5))
    run_pipeline(changed, workers=1, progress=False)
    assert tree_bytes(tmp_path / "run", "data") != first


def test_kill_9_then_rerun_gives_identical_output(tmp_path):
    write_corpus(tmp_path / "in", n_docs=3000, files=30, bad_lines=False)
    stages = [
        {"id": "norm", "use": "normalize"},
        {"id": "slow", "use": "plugins.stages:Slow", "params": {"seconds": 0.15}},
        {"id": "half", "use": "sample", "params": {"fraction": 0.5}},
    ]
    spec_a = pipeline(tmp_path, out="killed", stages=stages)
    spec_b = pipeline(tmp_path, out="clean", stages=stages)
    yaml_path = tmp_path / "killed.json"
    yaml_path.write_text(json.dumps(spec_a))  # JSON is valid YAML
    cmd = [sys.executable, "-m", "winnow.cli", "run", str(yaml_path), "--workers", "2", "--quiet"]
    proc = subprocess.Popen(cmd, start_new_session=True)
    parts = tmp_path / "killed" / "stages" / "half"
    deadline = time.time() + 60
    while len(list(parts.glob("part-*.json"))) < 5 and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 5 <= len(list(parts.glob("part-*.json"))) < 30
    assert not (tmp_path / "killed" / "ledger.json").exists()
    subprocess.run(cmd, check=True)
    run_pipeline(parse_pipeline(spec_b), workers=1, progress=False)
    for sub in ("data", "stages"):
        a, b = tree_bytes(tmp_path / "killed", sub), tree_bytes(tmp_path / "clean", sub)
        assert a == b


def test_a_stage_that_loses_rows_fails_the_run(tmp_path):
    write_corpus(tmp_path / "in", bad_lines=False)
    spec = pipeline(tmp_path, stages=[{"id": "leak", "use": "plugins.stages:Leaky"}])
    with pytest.raises(LedgerError, match="leak"):
        run_pipeline(parse_pipeline(spec), workers=1, progress=False)


def test_dag_branch_and_union(tmp_path):
    good = write_corpus(tmp_path / "in", bad_lines=False)
    stages = [
        {"id": "norm", "use": "normalize"},
        {"id": "a", "use": "sample", "params": {"fraction": 0.3}, "after": ["norm"]},
        {"id": "b", "use": "filter", "params": {"keep": "length(text) > 150"}, "after": ["norm"]},
        {"id": "both", "use": "normalize", "after": ["a", "b"]},
    ]
    ledger = run_pipeline(parse_pipeline(pipeline(tmp_path, stages=stages)), progress=False)
    kept = read_ids(tmp_path / "run" / "data")
    assert ledger.stages["both"].rows_in == ledger.stages["a"].kept + ledger.stages["b"].kept
    assert len(kept) == ledger.output_rows and set(kept) <= good


def test_parquet_output(tmp_path):
    import pyarrow.parquet as pq

    write_corpus(tmp_path / "in", bad_lines=False)
    spec = pipeline(tmp_path, output={"dir": str(tmp_path / "run"), "format": "parquet"})
    ledger = run_pipeline(parse_pipeline(spec), workers=1, progress=False)
    files = sorted((tmp_path / "run" / "data").glob("shard-*.parquet"))
    assert files and sum(pq.read_metadata(f).num_rows for f in files) == ledger.output_rows


def test_fail_mode_names_file_and_line(tmp_path):
    write_corpus(tmp_path / "in")
    spec = pipeline(tmp_path)
    spec["input"]["on_error"] = "fail"
    with pytest.raises(InputError, match=r"part-1\.jsonl\.gz:4"):
        run_pipeline(parse_pipeline(spec), workers=1, progress=False)


def run_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "winnow.cli", *args], capture_output=True, text=True, cwd=cwd
    )


def test_cli_user_errors_are_one_line(tmp_path):
    missing = tmp_path / "p.yaml"
    missing.write_text(json.dumps(pipeline(tmp_path)))
    res = run_cli("run", str(missing), "--quiet")
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert res.stderr.count("\n") == 1 and str(tmp_path / "in") in res.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(json.dumps(pipeline(tmp_path, stages=[{"id": "x", "use": "nope"}])))
    res = run_cli("validate", str(bad))
    assert res.returncode == 2 and "stages[0].use: unknown stage 'nope'" in res.stderr


def test_cli_run_inspect_stages(tmp_path):
    write_corpus(tmp_path / "in")
    path = tmp_path / "p.yaml"
    path.write_text(json.dumps(pipeline(tmp_path)))
    assert run_cli("validate", str(path)).returncode == 0
    res = run_cli("run", str(path), "--quiet", "--workers", "2")
    assert res.returncode == 0, res.stderr
    assert "ledger" in res.stdout
    res = run_cli("inspect", str(tmp_path / "run"))
    assert res.returncode == 0 and "sample rejected rows" in res.stdout
    res = run_cli("stages", "select")
    assert "token_fraction" in res.stdout


def test_global_stage_first(tmp_path):
    good = write_corpus(tmp_path / "in", bad_lines=False)
    stages = [{"id": "top", "use": "select", "params": {"by": "length(text)", "n": 10}}]
    ledger = run_pipeline(parse_pipeline(pipeline(tmp_path, stages=stages)), progress=False)
    kept = read_ids(tmp_path / "run" / "data")
    assert ledger.stages["read"].kept == len(good) and len(kept) == 10
