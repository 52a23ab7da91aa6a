"""Small file helpers every part of winnow shares: atomic writes, JSON, directory reset."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path


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
