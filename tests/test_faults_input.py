"""Fault catalogue, part 1: bad input files, run through ``winnow run`` as a user would.

Each case writes real files, runs the CLI in this process (one worker) and asserts
the outcome: the run succeeds with the expected rows kept and each bad row
quarantined with its reason (the ledger reconciles), or it fails with one line that
names the file (and line). Cases that need a process without root's permission
override run in a subprocess under ``setpriv`` (see ``unprivileged``).
``docs/faults.md`` lists every case here with its outcome; a test keeps the two in step.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from winnow.cli import main
from winnow.io.writers import read_table

DOCS = Path(__file__).resolve().parent.parent / "docs" / "faults.md"


def lines(*rows: str, end: bytes = b"\n") -> bytes:
    return b"".join(r.encode() + end for r in rows)


def good(n: int, start: int = 0) -> list[str]:
    return [json.dumps({"id": f"g{i}", "text": f"document number {i}"}) for i in range(start, n)]


def arrow_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


TABLE = pa.table({"id": ["t0", "t1", "t2"], "text": ["alpha", "beta", "gamma"]})
PLAIN = lines(*good(1000))
ZST = zstandard.ZstdCompressor().compress(PLAIN)
GZ = gzip.compress(PLAIN, mtime=0)
BIG = "x" * (30 * 2**20)


@dataclass
class Case:
    """Input files (relative to ``in/``), extra ``input:`` keys, and the outcome:
    ``kept`` rows with ``reasons`` quarantined at read, or an ``error`` substring."""

    name: str
    files: dict[str, bytes]
    kept: int | None = None
    reasons: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    input: dict = field(default_factory=dict)


SURROGATES = [
    '{"id": "s1", "text": "half a pair \\ud800 here"}',
    '{"id": "s2\\udfff", "text": "in the id"}',
    '{"id": "s3", "text": "in metadata", "meta": {"k": "\\udc00"}}',
    '{"id": "s4", "text": "a whole pair is fine \\ud83d\\ude00"}',
]

CASES = [
    Case("malformed_json", {"a.jsonl": lines(*good(3), '{"id": "x", "text": ')}, 3,
         {"malformed_json": 1}),
    Case("malformed_json_fail", {"a.jsonl": lines(*good(3), '{"id": "x", "text": ')},
         error="a.jsonl:4: malformed_json", input={"on_error": "fail"}),
    Case("invalid_utf8", {"a.jsonl": lines(*good(2)) + b'{"id": "u", "text": "\xff\xfe"}\n'}, 2,
         {"invalid_utf8": 1}),
    Case("null_text", {"a.jsonl": lines(*good(2), '{"id": "n", "text": null}')}, 2,
         {"null_text": 1}),
    Case("non_string_text", {"a.jsonl": lines(*good(2), '{"id": "n", "text": 5}')}, 2,
         {"non_string_text": 1}),
    Case("missing_text", {"a.jsonl": lines(*good(2), '{"id": "n", "body": "x"}')}, 2,
         {"missing_text": 1}),
    Case("not_an_object", {"a.jsonl": lines(*good(2), "[1, 2]")}, 2, {"not_object": 1}),
    Case("lone_surrogate", {"a.jsonl": lines(*good(2), *SURROGATES)}, 3,
         {"invalid_unicode": 3}),
    Case("lone_surrogate_fail", {"a.jsonl": lines(*good(2), *SURROGATES)},
         error="a.jsonl:3: invalid_unicode: lone surrogate", input={"on_error": "fail"}),
    Case("document_30mb", {"a.jsonl": lines(json.dumps({"id": "big", "text": BIG}), *good(2))},
         3),
    Case("empty_file", {"a.jsonl": b"", "b.jsonl": lines(*good(2))}, 2),
    Case("blank_lines_only", {"a.jsonl": b"\n \n\t\n"}, 0),
    Case("utf8_bom", {"a.jsonl": b"\xef\xbb\xbf" + lines(*good(3))}, 3),
    Case("crlf", {"a.jsonl": lines(*good(3), end=b"\r\n")}, 3),
    Case("no_final_newline", {"a.jsonl": lines(*good(3))[:-1]}, 3),
    Case("gzip_ok", {"a.jsonl.gz": GZ}, 1000),
    Case("zstd_ok", {"a.jsonl.zst": ZST}, 1000),
    Case("truncated_gzip", {"a.jsonl.gz": GZ[: len(GZ) // 2]}, error="truncated gzip stream"),
    Case("truncated_zstd", {"a.jsonl.zst": ZST[: len(ZST) // 2]},
         error="a.jsonl.zst: truncated zstd stream"),
    Case("truncated_zstd_at_frame_end", {"a.jsonl.zst": ZST[:-4]},
         error="a.jsonl.zst: truncated zstd stream"),
    Case("corrupt_zstd", {"a.jsonl.zst": b"\x28\xb5\x2f\xfd" + os.urandom(64)},
         error="a.jsonl.zst: cannot read"),
    Case("parquet_ok", {"a.parquet": parquet_bytes(TABLE)}, 3),
    Case("corrupt_parquet", {"a.parquet": b"PAR1" + b"\0" * 64},
         error="a.parquet: not a readable Parquet file"),
    Case("truncated_parquet", {"a.parquet": parquet_bytes(TABLE)[:-20]},
         error="a.parquet: not a readable Parquet file"),
    Case("arrow_ok", {"a.arrow": arrow_bytes(TABLE)}, 3),
    Case("corrupt_arrow", {"a.arrow": b"ARROW1" + b"\0" * 64},
         error="a.arrow: not a readable Arrow IPC file"),
    Case("truncated_arrow", {"a.arrow": arrow_bytes(TABLE)[:-40]},
         error="a.arrow: not a readable Arrow IPC file"),
    Case("no_text_column", {"a.parquet": parquet_bytes(TABLE.rename_columns(["id", "body"]))},
         error="a.parquet: no text column 'text'"),
]  # fmt: skip


def write_files(folder: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def pipeline_file(tmp_path: Path, input_path: str, **input_keys) -> Path:
    spec = {
        "name": "faults",
        "input": {"path": input_path, **input_keys},
        "output": {"dir": str(tmp_path / "run")},
        "runner": {"chunk_rows": 100, "progress": False},
        "stages": [{"id": "all", "use": "filter", "params": {"keep": "true"}}],
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(json.dumps(spec))
    return path


def run(capsys, *argv: str) -> tuple[int, str]:
    rc = main(list(argv))
    err = capsys.readouterr().err
    return rc, err


def assert_one_line(rc: int, err: str, expected: str) -> None:
    assert rc == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert expected in err, err


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case, tmp_path, capsys):
    write_files(tmp_path / "in", case.files)
    yaml = pipeline_file(tmp_path, str(tmp_path / "in"), **case.input)
    rc, err = run(capsys, "run", str(yaml), "--quiet", "--workers", "1")
    if case.error:
        assert_one_line(rc, err, case.error)
        return
    assert rc == 0, err
    ledger = json.loads((tmp_path / "run" / "ledger.json").read_text())
    assert ledger["stages"]["read"]["kept"] == case.kept
    assert ledger["stages"]["read"]["rejected"] == case.reasons
    assert ledger["output_rows"] == case.kept
    quarantined = list((tmp_path / "run" / "rejected" / "read").glob("part-*.arrow"))
    rows = pa.concat_tables([read_table(p) for p in quarantined]) if quarantined else None
    assert (rows.num_rows if rows else 0) == sum(case.reasons.values())
    if rows is not None:  # each quarantined row names its file and line
        assert all(f.endswith(tuple(case.files)) for f in rows.column("file").to_pylist())
        assert all(n >= 1 for n in rows.column("line").to_pylist())


def test_lone_surrogates_are_quarantined_with_file_and_line(tmp_path, capsys):
    write_files(tmp_path / "in", {"a.jsonl": lines(*good(2), *SURROGATES)})
    rc, err = run(capsys, "run", str(pipeline_file(tmp_path, str(tmp_path / "in"))), "--quiet")
    assert rc == 0, err
    rejected = read_table(tmp_path / "run" / "rejected" / "read" / "part-00000.arrow")
    assert rejected.column("line").to_pylist() == [3, 4, 5]
    assert set(rejected.column("reason").to_pylist()) == {"invalid_unicode: lone surrogate"}
    kept = pa.concat_tables(read_table(p) for p in sorted((tmp_path / "run" / "data").iterdir()))
    assert kept.column("id").to_pylist() == ["g0", "g1", "s4"]
    assert kept.column("text").to_pylist()[-1] == "a whole pair is fine \U0001f600"


# ----- permissions: root ignores them, so these run without the override capabilities

DROP_CAPS = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]


def unprivileged(yaml: Path) -> subprocess.CompletedProcess:
    """``winnow run`` in a process that file permissions apply to (also as root)."""
    prefix = DROP_CAPS if os.geteuid() == 0 else []
    if prefix and not shutil.which("setpriv"):
        pytest.fail("running as root needs setpriv (util-linux) to drop capabilities")
    cmd = [*prefix, sys.executable, "-m", "winnow.cli", "run", str(yaml), "--quiet"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def unreadable_tree(root: Path) -> None:
    write_files(root / "in", {"ok/a.jsonl": lines(*good(100)), "locked/b.jsonl": lines(*good(9))})
    write_files(root / "plain", {"big.jsonl": lines(*good(300))})
    write_files(root / "tab", {"a.arrow": arrow_bytes(TABLE), "a.parquet": parquet_bytes(TABLE)})
    for path in ("in/locked", "plain/big.jsonl", "tab/a.arrow", "tab/a.parquet"):
        os.chmod(root / path, 0)


PERMISSION_CASES = {  # input path (relative to tmp) -> the one-line error
    "in": "in/locked: permission denied",
    "in/*/*.jsonl": "in/locked: permission denied",
    "in/**/*.jsonl": "in/locked: permission denied",
    "in/locked/*.jsonl": "in/locked: permission denied",
    "in/locked": "in/locked: permission denied",
    "plain/big.jsonl": "big.jsonl: permission denied",
    "tab/a.arrow": "a.arrow: permission denied",
    "tab/a.parquet": "a.parquet: permission denied",
}


@pytest.mark.parametrize("entry", list(PERMISSION_CASES))
def test_unreadable_inputs_fail_naming_them(entry, tmp_path):
    unreadable_tree(tmp_path)
    res = unprivileged(pipeline_file(tmp_path, str(tmp_path / entry)))
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.count("\n") == 1 and PERMISSION_CASES[entry] in res.stderr, res.stderr
    assert not (tmp_path / "run" / "ledger.json").exists()


def test_catalogue_is_documented():
    """Every case above has a row in docs/faults.md."""
    table = DOCS.read_text()
    names = [c.name for c in CASES] + ["unreadable_input"]
    missing = [n for n in names if f"`{n}`" not in table]
    assert not missing, f"docs/faults.md lacks rows for {missing}"
