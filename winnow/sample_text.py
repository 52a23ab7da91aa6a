"""Real English text that every Python install carries, for offline demos and tests.

Docstrings are read by parsing source files with ``ast`` (nothing is imported, so
no module side effects), and package descriptions come from installed metadata.
Order is deterministic: files and distributions are visited sorted by name.
"""

from __future__ import annotations

import ast
import sysconfig
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

_SKIP_DIRS = {"test", "tests", "idlelib", "lib2to3", "__pycache__", "site-packages"}


def _source_files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*.py")):
        if not _SKIP_DIRS.intersection(path.relative_to(root).parts[:-1]):
            yield path


def _docstrings(path: Path) -> Iterator[tuple[str, int, str]]:
    try:
        tree = ast.parse(path.read_bytes())
    except (SyntaxError, ValueError, UnicodeDecodeError):
        return
    nodes = [tree] + [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    ]
    for node in nodes:
        doc = ast.get_docstring(node)
        if doc:
            yield getattr(node, "name", "<module>"), getattr(node, "lineno", 0), doc


def docstrings(root: str | Path | None = None, min_chars: int = 200) -> Iterator[dict]:
    """Docstrings of at least ``min_chars`` from the standard library (or ``root``)."""
    root = Path(root or sysconfig.get_paths()["stdlib"])
    for path in _source_files(root):
        rel = path.relative_to(root).with_suffix("").as_posix()
        for name, line, doc in _docstrings(path):
            if len(doc) >= min_chars:
                yield {"id": f"doc:{rel}:{line}:{name}", "text": doc, "source": "docstring"}


def package_descriptions(min_chars: int = 200) -> Iterator[dict]:
    """Long descriptions (README text) of installed distributions."""
    seen: set[str] = set()
    dists = sorted(metadata.distributions(), key=lambda d: (d.metadata["Name"] or "").lower())
    for dist in dists:
        name = (dist.metadata["Name"] or "").lower()
        body = dist.metadata.get_payload() or dist.metadata.get("Description") or ""
        if name and name not in seen and len(body) >= min_chars:
            seen.add(name)
            yield {"id": f"pkg:{name}", "text": body.strip(), "source": "package"}


def real_documents(limit: int | None = None, min_chars: int = 200) -> list[dict]:
    """Up to ``limit`` real documents: stdlib docstrings first, then package READMEs,
    then docstrings of installed third-party packages."""
    out: list[dict] = []
    sources = [
        docstrings(min_chars=min_chars),
        package_descriptions(min_chars=min_chars),
        docstrings(sysconfig.get_paths()["purelib"], min_chars=min_chars),
    ]
    seen_ids: set[str] = set()
    for source in sources:
        for doc in source:
            if doc["id"] in seen_ids:
                continue
            seen_ids.add(doc["id"])
            out.append(doc)
            if limit is not None and len(out) >= limit:
                return out
    return out
