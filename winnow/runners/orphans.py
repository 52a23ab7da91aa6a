"""Worker processes end when the run's main process ends, even by ``kill -9``.

A pool worker's parent may be a fork server rather than the main process, and a
worker that outlives the main process finishes queued tasks and then waits forever.
``exit_with(pid)`` (called in each worker's initializer) starts a daemon thread that
waits on a pidfd of the main process (``os.pidfd_open``, Linux 5.3+; elsewhere it
polls every second) and ends the worker with ``os._exit`` as soon as it is gone.
"""

from __future__ import annotations

import os
import select
import threading
import time


def exit_with(pid: int) -> None:
    """End this process when process ``pid`` exits."""
    if not _alive(pid):
        os._exit(1)
    threading.Thread(target=_watch, args=(pid,), name="winnow-orphan-watch", daemon=True).start()


def _watch(pid: int) -> None:
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        while _alive(pid):
            time.sleep(1.0)
    else:
        select.select([fd], [], [])  # readable once the process has exited
    os._exit(1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by another user
    return True
