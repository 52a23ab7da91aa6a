"""The run directory's safety rules: whose it is, who holds it, what is published.

- **Ownership.** winnow writes only into a directory it made (``RUN/.winnow``) or an
  empty one; ``--force`` also admits a foreign directory, as long as none of the names
  winnow writes exist there. The output directory may neither contain an input path
  nor lie inside one that would read it, so deleting ``data/`` can never delete input
  and later runs never read their own output.
- **One run at a time.** ``RUN/.lock`` is held with ``flock`` for the whole run and
  names its holder (pid, host); the kernel drops it when the process dies, so a
  ``kill -9`` leaves no stale lock.
- **Atomic publishing.** New shards are written to ``RUN/.data.new`` and swapped in
  with renames only after the files and the ledger check out. ``RUN/_IN_PROGRESS``
  marks a run from its start; it says ``publishing: true`` from the first rename
  until ``data/``, ``ledger.json`` and ``manifest.json`` all describe the new run, so
  a run killed before publishing leaves the previous run readable, and one killed
  while publishing is seen as such (``verify``) until a re-run publishes again.
"""

from __future__ import annotations

import errno
import fcntl
import fnmatch
import json
import os
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from winnow.errors import WinnowError
from winnow.files import read_json, write_json_atomic

MARKER = ".winnow"
LOCK = ".lock"
IN_PROGRESS = "_IN_PROGRESS"
NEW_DATA, OLD_DATA = ".data.new", ".data.old"
# Names winnow creates in a run directory (stages may add side outputs in their own).
OWN_NAMES = {"stages", "rejected", "data", "ledger.json", "manifest.json", MARKER, LOCK,
             IN_PROGRESS, NEW_DATA, OLD_DATA}  # fmt: skip


class RunDirError(WinnowError):
    """The output directory cannot be used for this run."""


def _real(path: str | Path) -> Path:
    return Path(os.path.realpath(os.path.expanduser(str(path))))


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def _static_prefix(entry: str) -> tuple[str, list[str]]:
    """A local input entry's directory part before any glob magic, and the rest."""
    parts = entry.split("/")
    magic = [i for i, p in enumerate(parts) if any(c in p for c in "*?[")]
    if not magic:
        return entry, []
    i = magic[0]
    return "/".join(parts[:i]) or ("/" if entry.startswith("/") else "."), parts[i:]


def _glob_reaches(pattern: list[str], rel: list[str]) -> bool:
    """Whether glob components could match ``rel`` (a path below the glob's prefix),
    one of its ancestors (a matched directory is read recursively) or a path inside it."""
    for i, pat in enumerate(pattern):
        if pat == "**" or i == len(rel):
            return True
        if not fnmatch.fnmatchcase(rel[i], pat):
            return False
    return True


def check_overlap(run_dir: Path, inputs: list[str]) -> None:
    """Refuse an output directory that holds an input or that an input would read."""
    run = _real(run_dir)
    for entry in inputs:
        if "://" in entry:
            continue
        prefix, pattern = _static_prefix(entry)
        if not os.path.exists(prefix):
            continue  # a hub dataset id, or a missing path (reading reports that)
        base = _real(prefix)
        if _inside(base, run):
            raise RunDirError(
                f"output.dir {str(run_dir)!r} contains the input {entry!r}; "
                "deleting the run's output could delete input: choose another directory"
            )
        if _inside(run, base) and (
            not pattern or _glob_reaches(pattern, list(run.relative_to(base).parts))
        ):
            raise RunDirError(
                f"output.dir {str(run_dir)!r} is inside the input {entry!r}; "
                "later runs would read their own output: choose another directory"
            )


def check_owner(run_dir: Path, force: bool) -> None:
    """Refuse an existing directory winnow did not make (``--force``: unless it holds
    names winnow would overwrite), and an output path that is not a directory."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"output.dir {str(run_dir)!r}: exists and is not a directory")
    if not run_dir.exists() or is_run_dir(run_dir):
        return
    try:
        entries = sorted(os.listdir(run_dir))
    except OSError as exc:
        raise RunDirError(f"output.dir {str(run_dir)!r}: {exc.strerror.lower()}") from None
    if set(entries) <= {LOCK}:  # empty, or another run is just claiming it
        return
    if not force:
        raise RunDirError(
            f"output.dir {str(run_dir)!r} exists and is not a winnow run directory "
            f"(it holds {', '.join(entries[:3])}{', ...' if len(entries) > 3 else ''}); "
            "choose another directory, or pass --force to write into it"
        )
    clash = [e for e in entries if e in OWN_NAMES]
    if clash:
        raise RunDirError(
            f"output.dir {str(run_dir)!r} is not a winnow run directory and holds "
            f"{', '.join(clash)}, which a run would replace; choose another directory"
        )


def is_run_dir(path: Path) -> bool:
    """Made by winnow: the marker, or (runs from before the marker) a pass folder with
    the runner's ``_HASH`` file under ``stages/``."""
    return (path / MARKER).is_file() or any(path.glob("stages/*/_HASH"))


class RunLock:
    """An exclusive ``flock`` on ``RUN/.lock`` that names its holder; use as a context."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / LOCK
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise writable_error(self.path.parent, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunDirError(
                f"run directory {str(self.path.parent)!r} in use by pid {holder.get('pid', '?')}"
                f" on {holder.get('host', '?')}"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock; the file stays (harmless)
            self._fd = None


def _read_holder(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}


def holder(run_dir: Path) -> dict | None:
    """The pid and host of the run holding ``run_dir``, or None when it is free."""
    path = run_dir / LOCK
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_holder(fd)
    finally:
        os.close(fd)
    return None


_FULL = (errno.ENOSPC, errno.EDQUOT)


@contextmanager
def disk_errors(where: str, folder: Path) -> Iterator[None]:
    """A full disk or quota (also from a worker, or as pyarrow words it) becomes one
    line naming the file when the error does, else ``folder``, and ``where``."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in _FULL and "No space left on device" not in str(exc):
            raise
        raise RunDirError(f"{exc.filename or folder}: no space left on device ({where})") from None


def writable_error(path: Path, exc: OSError) -> RunDirError:
    """One line for an output path the OS will not let winnow write."""
    if exc.errno in _FULL:
        return RunDirError(f"{path}: no space left on device")
    return RunDirError(f"output.dir {str(path)!r}: {(exc.strerror or str(exc)).lower()}")


def _progress(publishing: bool) -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(),
            "publishing": publishing}  # fmt: skip


@contextmanager
def claimed(run_dir: Path, inputs: list[str], force: bool) -> Iterator[None]:
    """Check and lock ``run_dir`` for one run, marked in progress until ``publish``.

    A run that fails before publishing removes the mark (``data/`` and the ledger
    still describe the previous run), unless an earlier run died while publishing.
    """
    check_overlap(run_dir, inputs)
    check_owner(run_dir, force)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise writable_error(run_dir, exc) from None
    with RunLock(run_dir):
        interrupted = (state(run_dir) or {}).get("publishing", False)
        try:
            write_json_atomic(run_dir / MARKER, {"winnow_run_directory": 1})
            write_json_atomic(run_dir / IN_PROGRESS, _progress(publishing=interrupted))
        except OSError as exc:
            raise writable_error(run_dir, exc) from None
        shutil.rmtree(run_dir / NEW_DATA, ignore_errors=True)
        try:
            yield
        except BaseException:
            if not (state(run_dir) or {}).get("publishing", False):
                (run_dir / IN_PROGRESS).unlink(missing_ok=True)
            shutil.rmtree(run_dir / NEW_DATA, ignore_errors=True)
            raise


def publish(run_dir: Path, ledger: dict, manifest: dict) -> None:
    """Swap ``.data.new`` in as ``data/`` and write the ledger and manifest; a crash in
    between leaves ``_IN_PROGRESS`` saying so (``publishing: true``)."""
    write_json_atomic(run_dir / IN_PROGRESS, _progress(publishing=True))
    data, old = run_dir / "data", run_dir / OLD_DATA
    shutil.rmtree(old, ignore_errors=True)
    if data.exists():
        os.replace(data, old)
    os.replace(run_dir / NEW_DATA, data)
    write_json_atomic(run_dir / "ledger.json", ledger)
    write_json_atomic(run_dir / "manifest.json", manifest)
    (run_dir / IN_PROGRESS).unlink()
    shutil.rmtree(old, ignore_errors=True)


def state(run_dir: Path) -> dict | None:
    """The ``_IN_PROGRESS`` record, or None when the last run finished publishing."""
    path = run_dir / IN_PROGRESS
    return read_json(path) if path.exists() else None


def verify(run_dir: Path) -> list[str]:
    """Problems that make ``data/`` disagree with the ledger and manifest (empty: none)."""
    current, who = state(run_dir), holder(run_dir)
    if who:
        return [f"a run (pid {who.get('pid')} on {who.get('host')}) is writing it"]
    if current and current.get("publishing"):
        return [f"{IN_PROGRESS}: a run was interrupted while publishing; run it again"]
    manifest, ledger = read_json(run_dir / "manifest.json"), read_json(run_dir / "ledger.json")
    problems, total = [], 0
    for sink, out in manifest["outputs"].items():
        folder = run_dir / out["dir"]
        listed = {s["file"]: s for s in out["shards"]}
        found = {p.name for p in folder.glob("shard-*")} if folder.is_dir() else set()
        problems += [
            f"{out['dir']}/{n}: listed in the manifest, missing" for n in listed.keys() - found
        ]
        problems += [f"{out['dir']}/{n}: not in the manifest" for n in found - listed.keys()]
        for name in sorted(listed.keys() & found):
            problem = _shard_problem(folder / name, listed[name])
            if problem:
                problems.append(f"{out['dir']}/{name}: {problem}")
        if ledger.get("outputs", {}).get(sink, out["rows"]) != out["rows"]:
            problems.append(f"output {sink!r}: ledger and manifest disagree on its rows")
        total += out["rows"]
    if total != ledger["output_rows"]:
        problems.append(
            f"data/: {total} rows in the manifest, {ledger['output_rows']} in the ledger"
        )
    return problems


def _shard_problem(path: Path, shard: dict) -> str | None:
    from winnow.io.writers import table_rows

    size = path.stat().st_size
    if size != shard["bytes"]:
        return f"{size} bytes, the manifest says {shard['bytes']}"
    try:
        rows = table_rows(path)
    except (OSError, ValueError) as exc:  # pyarrow's errors derive from these
        return f"unreadable ({exc})"
    if rows != shard["rows"]:
        return f"{rows} rows, the manifest says {shard['rows']}"
    return None
