"""Small file helpers every part of winnow shares: atomic writes, JSON, directory reset."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import xxhash


def atomic_write(path: Path, data: bytes, durable: bool = True) -> None:
    """Write ``data`` to ``path`` so a reader sees the old file or the new one, never a
    torn one (a temporary file in the same folder, then a rename); ``durable`` fsyncs
    before the rename."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


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
