"""Shared fixtures: test plugin stages importable in worker processes, and the one
SparkSession of a test run."""

import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(TESTS)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
)


def pytest_collection_modifyitems(config, items):
    """GPU tests run on a machine with CUDA (the lent accelerator); elsewhere they are
    skipped with a reason that says so, never silently."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device: run with `pytest -m gpu` on a GPU host")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def spark():
    """One session for the whole run; ``local[2,3]``: 2 cores, a task may fail 3 times.
    pyspark is part of the ``dev`` extra, so a missing install fails rather than skips."""
    from winnow.spark.session import get_session

    os.environ["PYSPARK_PYTHON"] = sys.executable
    session = get_session(
        "local[2,3]",
        app_name="winnow-tests",
        conf={
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
            "spark.sql.shuffle.partitions": "4",
        },
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
