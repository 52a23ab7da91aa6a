"""Small file helpers every part of winnow shares: atomic writes, JSON, directory reset."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import xxhash


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()  # the usual mode (0666 less the umask), not mkstemp's 0600


@contextmanager
def atomic_file(path: Path, durable: bool = True) -> Iterator[BinaryIO]:
    """A binary file that appears at ``path`` whole or not at all: written to a hidden
    temporary name in the same folder, then renamed into place (and removed if the
    body raises). ``durable`` fsyncs the file and the rename; without it the file is
    still whole for other processes (enough for ``kill -9``), not after a power loss.
    Files get ``FILE_MODE``, so others on shared storage can read them."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, durable: bool = True) -> None:
    """Write ``data`` to ``path`` through ``atomic_file``."""
    with atomic_file(path, durable) as f:
        f.write(data)


def write_json_atomic(path: Path, obj) -> None:
    """``obj`` as indented, key-sorted JSON, written atomically."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"
    atomic_write(path, text.encode(), durable=False)


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def reset_dir(path: Path) -> None:
    """Remove ``path`` (if present) and create it empty."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)


def tree_digest(path: Path) -> str | None:
    """xxh3-128 over a file's bytes, or over a folder's relative file names and bytes
    (sorted); None when ``path`` does not exist."""
    path = Path(path)
    if not path.exists():
        return None
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    h = xxhash.xxh3_128()
    for f in files:
        if f != path:
            h.update(str(f.relative_to(path)).encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()
