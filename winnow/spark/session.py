"""The Spark session and the errors that cross from its workers.

A ``WinnowError`` raised in a Python worker reaches the driver as a Py4J or Python
exception whose text holds the original; ``unwrap_errors`` turns it back into the
one-line error, so Spark prints what the local runner prints.
"""

from __future__ import annotations

import os
import re
import sys
from contextlib import contextmanager

from pyspark.sql import SparkSession

from winnow import errors
from winnow.errors import WinnowError


def get_session(master: str | None = None, app_name: str = "winnow", conf: dict | None = None):
    """The active SparkSession, or a new one whose Python workers use this interpreter.

    Without ``master`` the master comes from ``spark-submit``, else ``local[*]``.
    """

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    if master is None and "PYSPARK_GATEWAY_PORT" not in os.environ:
        master = "local[*]"
    if master is not None:
        builder = builder.master(master)
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


_WINNOW_ERROR = re.compile(r"winnow\.errors\.(\w+): ([^\n]*)")


def error_class(name: str) -> type[WinnowError]:
    cls = getattr(errors, name, WinnowError)
    return cls if isinstance(cls, type) and issubclass(cls, WinnowError) else WinnowError


@contextmanager
def unwrap_errors():
    """Turn a WinnowError raised in a Spark worker back into the one-line error."""
    try:
        yield
    except WinnowError:
        raise
    except Exception as exc:  # Py4JJavaError, PythonException, ...
        found = _WINNOW_ERROR.findall(str(exc))
        if not found:
            raise
        name, message = found[-1]
        raise error_class(name)(message) from None
