"""Fault catalogue, part 3: the run directory under misuse and crashes.

Real runs through the ``winnow`` CLI (in this process where it can be, in a
subprocess where the test kills it or drops root's permission override). Each test
asserts what the user sees (one line, the right name in it) and what is left on
disk (the input still there, ``data/`` matching the ledger, the same bytes as an
uninterrupted run). ``docs/faults.md`` has the table of these cases.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from winnow.cli import main

DOCS = Path(__file__).resolve().parent.parent / "docs" / "faults.md"
DROP_CAPS = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]
WORDS = "the quick brown fox jumps over a lazy dog while seven bright stars watch".split()


def corpus(folder: Path, docs: int = 600, files: int = 3) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for f in range(files):
        rows = []
        for i in range(f, docs, files):
            text = " ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(8 + i % 30))
            rows.append(json.dumps({"id": f"d{i}", "text": text}))
        (folder / f"part-{f}.jsonl").write_text("\n".join(rows) + "\n")


STAGES = [
    {"id": "norm", "use": "normalize"},
    {"id": "long", "use": "filter", "params": {"keep": "length(text) > 60"}},
    {"id": "top", "use": "select", "params": {"by": "length(text)", "fraction": 0.5}},
]


def pipeline(path: Path, input_path, output_dir, stages=STAGES, chunk_rows=50) -> Path:
    spec = {
        "name": "faults",
        "input": {"path": str(input_path)},
        "output": {"dir": str(output_dir), "shard_rows": 40},
        "runner": {"chunk_rows": chunk_rows, "progress": False},
        "stages": stages,
    }
    path.write_text(json.dumps(spec))
    return path


def run(capsys, yaml: Path, *extra: str) -> tuple[int, str]:
    rc = main(["run", str(yaml), "--quiet", "--workers", "1", *extra])
    return rc, capsys.readouterr().err


def inspect(capsys, run_dir: Path) -> tuple[int, str]:
    rc = main(["inspect", str(run_dir)])
    return rc, capsys.readouterr().err


def one_line(err: str, expected: str) -> None:
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert expected in err, err


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def published(run_dir: Path) -> dict[str, bytes]:
    out = tree(run_dir / "data")
    out.update({n: (run_dir / n).read_bytes() for n in ("ledger.json", "manifest.json")})
    return out


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    corpus(tmp_path / "in")
    return tmp_path


# ----- 2: the output directory never holds, nor is read as, input


@pytest.mark.parametrize(
    "input_path, output_dir, message",
    [
        ("in/*.jsonl", ".", "contains the input 'in/*.jsonl'"),
        ("in", "in", "contains the input 'in'"),
        ("in", "in/run", "is inside the input 'in'"),
        ("in/**/*.jsonl", "in/sub/run", "is inside the input 'in/**/*.jsonl'"),
        ("in/part-0.jsonl", "in", "contains the input 'in/part-0.jsonl'"),
    ],
)
def test_overlapping_output_is_refused(work, capsys, input_path, output_dir, message):
    before = tree(work / "in")
    rc, err = run(capsys, pipeline(work / "p.yaml", input_path, output_dir))
    assert rc == 2
    one_line(err, message)
    assert tree(work / "in") == before  # nothing written, nothing deleted


def test_a_glob_that_cannot_reach_the_output_is_fine(work, capsys):
    (work / "flat").mkdir()
    (work / "flat" / "a.jsonl").write_text((work / "in" / "part-0.jsonl").read_text())
    rc, err = run(capsys, pipeline(work / "p.yaml", "flat/*.jsonl", "flat/run"))
    assert rc == 0, err


def test_a_hub_dataset_id_is_not_a_local_path(work):
    from winnow.runners.rundir import check_overlap

    check_overlap(Path("."), ["HuggingFaceFW/fineweb-edu"])  # no error: nothing local


def test_a_foreign_directory_is_refused_and_kept(work, capsys):
    (work / "mine").mkdir()
    (work / "mine" / "notes.txt").write_text("my notes")
    yaml = pipeline(work / "p.yaml", "in", "mine")
    rc, err = run(capsys, yaml)
    assert rc == 2
    one_line(err, "output.dir 'mine' exists and is not a winnow run directory")
    rc, err = run(capsys, yaml, "--force")  # allowed, and the user's file stays
    assert rc == 0, err
    assert (work / "mine" / "notes.txt").read_text() == "my notes"
    rc, err = run(capsys, yaml)  # now a run directory: re-runs need no --force
    assert rc == 0, err


def test_force_never_replaces_a_foreign_data_folder(work, capsys):
    (work / "mine" / "data").mkdir(parents=True)
    (work / "mine" / "data" / "keep.arrow").write_bytes(b"precious")
    rc, err = run(capsys, pipeline(work / "p.yaml", "in", "mine"), "--force")
    assert rc == 2
    one_line(err, "holds data, which a run would replace")
    assert (work / "mine" / "data" / "keep.arrow").read_bytes() == b"precious"


def test_output_dir_that_is_a_file(work, capsys):
    (work / "out").write_text("x")
    rc, err = run(capsys, pipeline(work / "p.yaml", "in", "out"))
    assert rc == 2
    one_line(err, "output.dir 'out': exists and is not a directory")


def unprivileged(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    prefix = DROP_CAPS if os.geteuid() == 0 else []
    cmd = [*prefix, sys.executable, "-m", "winnow.cli", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=cwd)


def test_unwritable_output_dir(work):
    (work / "ro").mkdir()
    os.chmod(work / "ro", 0o555)
    yaml = pipeline(work / "p.yaml", "in", "ro/run")
    res = unprivileged("run", str(yaml), "--quiet", cwd=work)
    assert res.returncode == 2, res.stderr
    one_line(res.stderr, "ro/run': permission denied")


# ----- 8: one run at a time


def test_second_run_is_refused_while_the_first_holds_the_directory(work, capsys):
    from winnow.runners.rundir import RunLock

    yaml = pipeline(work / "p.yaml", "in", "run")
    (work / "run").mkdir()
    with RunLock(work / "run"):
        rc, err = run(capsys, yaml)
    assert rc == 2
    one_line(err, f"run directory 'run' in use by pid {os.getpid()}")
    rc, err = run(capsys, yaml)  # released with its holder
    assert rc == 0, err


# ----- 5: publishing is atomic, and inspect checks what was published


def test_failed_rerun_leaves_the_published_run_untouched(work, capsys):
    yaml = pipeline(work / "p.yaml", "in", "run")
    assert run(capsys, yaml)[0] == 0
    before = published(work / "run")
    lossy = [*STAGES, {"id": "leak", "use": "plugins.stages:Leaky"}]
    rc, err = run(capsys, pipeline(work / "p.yaml", "in", "run", stages=lossy))
    assert rc == 2 and "leak" in err, err
    assert published(work / "run") == before
    assert inspect(capsys, work / "run")[0] == 0


def test_crash_while_publishing_is_seen_and_repaired(work, capsys, monkeypatch):
    from winnow.runners import rundir

    yaml = pipeline(work / "p.yaml", "in", "run")
    assert run(capsys, yaml)[0] == 0
    reference = published(work / "run")
    real_replace = os.replace

    def crash_after_data_swap(src, dst):
        real_replace(src, dst)
        if Path(dst).name == "data":
            raise KeyboardInterrupt  # the process dies here: ledger not yet written

    monkeypatch.setattr(rundir.os, "replace", crash_after_data_swap)
    assert run(capsys, yaml)[0] == 130
    monkeypatch.setattr(rundir.os, "replace", real_replace)
    rc, err = inspect(capsys, work / "run")
    assert rc == 2
    one_line(err, "_IN_PROGRESS: a run was interrupted while publishing")
    assert run(capsys, yaml)[0] == 0
    assert published(work / "run") == reference
    assert inspect(capsys, work / "run")[0] == 0


@pytest.mark.parametrize("damage", ["delete", "truncate", "extra"])
def test_inspect_finds_data_that_does_not_match_the_ledger(work, capsys, damage):
    yaml = pipeline(work / "p.yaml", "in", "run")
    assert run(capsys, yaml)[0] == 0
    shard = sorted((work / "run" / "data").glob("shard-*.arrow"))[1]
    if damage == "delete":
        shard.unlink()
    elif damage == "truncate":
        shard.write_bytes(shard.read_bytes()[:-100])
    else:
        shard.with_name("shard-09999.arrow").write_bytes(shard.read_bytes())
    rc, err = inspect(capsys, work / "run")
    assert rc == 2
    expected = "shard-09999.arrow: not in the manifest" if damage == "extra" else shard.name
    one_line(err, expected)


def test_published_shards_are_copies_not_links(work, capsys):
    yaml = pipeline(work / "p.yaml", "in", "run", stages=STAGES[:2])
    assert run(capsys, yaml)[0] == 0
    for path in (work / "run").rglob("*.arrow"):
        assert path.stat().st_nlink == 1, path
    shard = sorted((work / "run" / "data").glob("shard-*.arrow"))[0]
    part = sorted((work / "run" / "stages" / "long").glob("part-*.arrow"))[0]
    assert shard.read_bytes() == part.read_bytes()


def test_files_are_readable_by_others(work, capsys):
    assert run(capsys, pipeline(work / "p.yaml", "in", "run"))[0] == 0
    files = [p for p in (work / "run").rglob("*") if p.is_file() and p.name != ".lock"]
    modes = {str(p.relative_to(work)): stat.S_IMODE(p.stat().st_mode) for p in files}
    umask = os.umask(0)
    os.umask(umask)
    assert set(modes.values()) == {0o666 & ~umask}, modes


# ----- 7: damaged parts are found and exactly those are recomputed


@pytest.mark.parametrize("damage", ["delete", "truncate", "flip_a_byte"])
def test_damaged_parts_are_recomputed_by_name(work, capsys, damage):
    yaml = pipeline(work / "p.yaml", "in", "run")
    assert run(capsys, yaml)[0] == 0
    reference = tree(work / "run" / "data")
    parts = work / "run" / "stages" / "long"
    victim = sorted(parts.glob("part-*.arrow"))[3]
    others = {p: p.stat().st_mtime_ns for p in parts.glob("part-*.arrow") if p != victim}
    if damage == "delete":
        victim.unlink()
    elif damage == "truncate":
        victim.write_bytes(victim.read_bytes()[:-64])
    else:
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0xFF
        victim.write_bytes(bytes(data))
    rc, err = run(capsys, yaml)
    assert rc == 0, err
    assert f"stages/long/{victim.name}" in err and "recomputing" in err, err
    assert tree(work / "run" / "data") == reference
    assert {p: p.stat().st_mtime_ns for p in others} == others  # only the victim was redone


def test_damaged_global_part_recomputes_its_pass(work, capsys):
    yaml = pipeline(work / "p.yaml", "in", "run")
    assert run(capsys, yaml)[0] == 0
    reference = tree(work / "run" / "data")
    victim = sorted((work / "run" / "stages" / "top").glob("part-*.arrow"))[0]
    victim.write_bytes(victim.read_bytes()[:-64])
    rc, err = run(capsys, yaml)
    assert rc == 0, err
    assert f"stages/top/{victim.name}" in err, err
    assert tree(work / "run" / "data") == reference


# ----- 6 and kill -9: nothing survives the main process; a re-run finishes identically


def descendants(pid: int) -> set[int]:
    found, frontier = set(), [pid]
    while frontier:
        parent = frontier.pop()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent and int(entry.name) not in found:
                found.add(int(entry.name))
                frontier.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def kill_main_midway(work: Path, stages, out: str, wait_for: str, count: int) -> set[int]:
    """Start a 2-worker run, SIGKILL only its main process once ``count`` files match
    ``wait_for``; returns the pids that were its descendants."""
    yaml = pipeline(work / f"{out}.yaml", "in", out, stages=stages, chunk_rows=20)
    cmd = [sys.executable, "-m", "winnow.cli", "run", str(yaml), "--workers", "2", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=work)
    deadline = time.time() + 60
    while len(list(work.glob(wait_for))) < count and time.time() < deadline:
        time.sleep(0.05)
    children = descendants(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return children


SLOW = [*STAGES[:2], {"id": "slow", "use": "plugins.stages:Slow", "params": {"seconds": 0.2}}]


def test_kill_9_of_the_main_process_leaves_no_worker(work, capsys):
    children = kill_main_midway(work, SLOW, "killed", "killed/stages/slow/part-*.json", 3)
    assert children, "the run had no worker processes"
    deadline = time.time() + 10
    while any(alive(p) for p in children) and time.time() < deadline:
        time.sleep(0.1)
    assert not [p for p in children if alive(p)]
    yaml = work / "killed.yaml"
    rc, err = run(capsys, yaml)  # the lock died with its holder: the re-run may go on
    assert rc == 0, err
    clean = pipeline(work / "clean.yaml", "in", "clean", stages=SLOW, chunk_rows=20)
    assert run(capsys, clean)[0] == 0
    assert tree(work / "killed" / "data") == tree(work / "clean" / "data")


def test_kill_9_in_a_global_pass_then_rerun_is_identical(work, capsys):
    stages = [
        *STAGES[:2],
        {"id": "slowg", "use": "plugins.stages:SlowGlobal", "params": {"seconds": 0.2}},
        {"id": "tail", "use": "normalize"},
    ]
    kill_main_midway(work, stages, "killed", "killed/stages/slowg/part-*.arrow", 2)
    assert not (work / "killed" / "ledger.json").exists()
    assert run(capsys, work / "killed.yaml")[0] == 0
    clean = pipeline(work / "clean.yaml", "in", "clean", stages=stages, chunk_rows=20)
    assert run(capsys, clean)[0] == 0
    assert tree(work / "killed" / "data") == tree(work / "clean" / "data")


# ----- 9: disk full


def test_disk_full_names_the_path_and_pass(work, capsys):
    mnt = work / "small"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
                         capture_output=True, text=True)  # fmt: skip
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip()}); needs root")
    try:
        corpus(work / "big", docs=6000, files=2)
        rc, err = run(capsys, pipeline(work / "p.yaml", "big", "small/run"))
        assert rc == 2
        one_line(err, "no space left on device")
        assert "small/run" in err and "pass 'long'" in err, err
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


# ----- 9: duplicate ids are reported at read time


def test_duplicate_ids_fail_with_both_places(work, capsys):
    (work / "in" / "part-9.jsonl").write_text(json.dumps({"id": "d5", "text": "again"}) + "\n")
    rc, err = run(capsys, pipeline(work / "p.yaml", "in", "run"))
    assert rc == 2
    one_line(err, "in/part-9.jsonl:1: duplicate id 'd5' (first at in/part-2.jsonl:2)")
    assert not (work / "run" / "data").exists()


def test_duplicate_ids_allowed_on_request(work, capsys):
    (work / "in" / "part-9.jsonl").write_text(json.dumps({"id": "d5", "text": "again"}) + "\n")
    yaml = pipeline(work / "p.yaml", "in", "run", stages=STAGES[:1])
    spec = json.loads(yaml.read_text())
    spec["input"]["duplicate_ids"] = "allow"
    yaml.write_text(json.dumps(spec))
    rc, err = run(capsys, yaml)
    assert rc == 0, err
    assert json.loads((work / "run" / "ledger.json").read_text())["output_rows"] == 601


# ----- 9: Spark's progress bar stays off with --quiet, so the error line stands alone


@pytest.mark.slow
def test_spark_quiet_error_is_one_line(work):
    (work / "in" / "part-1.jsonl").write_text('{"id": "x", "text": \n')
    yaml = pipeline(work / "p.yaml", "in", "run", stages=STAGES[:2])
    spec = json.loads(yaml.read_text())
    spec["input"]["on_error"] = "fail"
    yaml.write_text(json.dumps(spec))
    cmd = [sys.executable, "-m", "winnow.cli", "run", str(yaml), "--runner", "spark", "--quiet",
           "--master", "local[1]"]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=work)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "[Stage" not in res.stderr, res.stderr[-2000:]
    last = res.stderr.strip().splitlines()[-1]
    assert last == "winnow: error: in/part-1.jsonl:1: malformed_json: Expecting value", last


def test_catalogue_is_documented():
    table = DOCS.read_text()
    names = [n[5:] for n in globals() if n.startswith("test_") and "catalogue" not in n]
    missing = [n for n in names if f"`{n}`" not in table]
    assert not missing, f"docs/faults.md lacks rows for {missing}"
