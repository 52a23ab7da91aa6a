"""The versions a run records in its manifest: winnow, Python, packages, git revision."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

from winnow import __version__

PIPELINE_PACKAGES = ("pyarrow", "duckdb", "numpy", "datatrove", "tokenizers", "torch", "pyspark")


def package_versions(names=PIPELINE_PACKAGES) -> dict[str, str]:
    """winnow's and Python's versions plus those of the installed packages in ``names``."""
    out = {"winnow": __version__, "python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_revision() -> str | None:
    """The commit of the winnow checkout, when it is one (None for an installed wheel)."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
