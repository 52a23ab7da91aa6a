"""A labelled text corpus from the running Python's standard library: the docstrings
of public functions, classes and methods, labelled by module area. Used by the skill
tests (zero-shot labelling) and ``benchmarks/skills.py`` (a pool with a hidden
target domain). Deterministic for a given Python version."""

from __future__ import annotations

import importlib
import inspect

AREAS = {
    "mathematics and numbers": ["math", "cmath", "statistics", "fractions", "decimal", "random"],
    "files, paths and the operating system": ["os", "shutil", "pathlib", "glob", "tempfile"],
    "networking, email and internet protocols": [
        "socket", "ssl", "http.client", "http.server", "urllib.request", "urllib.parse",
        "smtplib", "imaplib", "ftplib", "poplib", "email.message", "email.utils",
        "email.headerregistry", "email.policy", "xmlrpc.client", "http.cookiejar",
        "http.cookies", "ipaddress", "socketserver", "mailbox", "email.header",
        "email.charset", "email.feedparser", "asyncio.streams", "urllib.robotparser",
    ],
    "text processing and regular expressions": ["re", "string", "textwrap", "difflib"],
    "concurrency, threads and processes": [
        "threading", "multiprocessing.pool", "concurrent.futures", "queue", "subprocess",
        "asyncio.locks", "asyncio.queues", "asyncio.tasks",
    ],
    "dates and times": ["datetime", "time", "calendar", "zoneinfo"],
    "data formats, archives and compression": [
        "json", "csv", "pickle", "configparser", "xml.etree.ElementTree", "xml.dom.minidom",
        "tarfile", "zipfile", "gzip", "zlib", "lzma", "bz2", "plistlib",
    ],
    "testing, debugging and logging": [
        "unittest.case", "unittest.mock", "doctest", "pdb", "traceback", "logging",
        "logging.handlers", "inspect", "dis", "timeit", "cProfile", "pstats", "bdb",
    ],
    "containers, iteration and functional tools": [
        "collections", "itertools", "functools", "operator", "heapq", "bisect", "dataclasses",
        "enum", "typing", "array", "weakref", "copy",
    ],
    "graphical user interfaces": ["tkinter", "tkinter.ttk", "turtle"],
    "command-line parsing and interactive shells": [
        "argparse", "optparse", "getopt", "cmd", "shlex", "code", "readline",
    ],
}  # fmt: skip


def docstrings(area: str, min_chars: int = 80) -> list[dict]:
    """``{id, text, area}`` for each distinct docstring of at least ``min_chars`` in
    the area's modules (functions, classes and their methods), in a stable order."""
    rows, seen = [], set()
    for module_name in AREAS[area]:
        module = importlib.import_module(module_name)
        for name, obj in sorted(vars(module).items()):
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            members = [(name, obj)]
            if inspect.isclass(obj):
                members += [(f"{name}.{m}", v) for m, v in sorted(vars(obj).items()) if m[0] != "_"]
            for qual, member in members:
                doc = inspect.getdoc(member) or ""
                if len(doc) >= min_chars and doc not in seen:
                    seen.add(doc)
                    rows.append({"id": f"{module_name}.{qual}", "text": doc, "area": area})
    return rows
