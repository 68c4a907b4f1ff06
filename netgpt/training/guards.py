"""What keeps one job to one trainer: a worker that dies with its parent, and a locked job folder.

:func:`die_with_parent` asks Linux to SIGKILL the calling process when its parent goes
(``prctl(PR_SET_PDEATHSIG)``, through ctypes), so a trainer worker never outlives the node that
started it, not even a ``kill -9`` of the node. :func:`folder_lock` holds an exclusive ``flock`` on
``<folder>/.lock`` for as long as a trainer writes the folder; a second trainer (an orphan of an
older node process, a second node started on the same deploy dir, ``netgpt train start --local``
on the same output) is refused with FAILED_PRECONDITION naming the holder's pid. The kernel
releases the lock when its holder dies, however it dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import structlog

from netgpt.errors import FailedPrecondition

log = structlog.get_logger(__name__)

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
LOCK_FILE = ".lock"
LOCK_WAIT_S = 2.0  # a holder that is dying (its parent just went) gets this long to let go
LOCK_POLL_S = 0.05


def die_with_parent(parent_pid: int) -> bool:
    """SIGKILL this process when its parent dies; exits at once if ``parent_pid`` is already gone
    (it died before the request took effect). False where the platform has no such signal."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        log.warning("training.pdeathsig_failed", errno=ctypes.get_errno())
        return False
    if os.getppid() != parent_pid:  # the parent went between our start and the prctl call
        os._exit(1)
    return True


@contextlib.contextmanager
def folder_lock(folder: Path, wait_s: float = LOCK_WAIT_S) -> Iterator[Path]:
    """Hold ``folder``'s exclusive trainer lock for the ``with`` block (the folder is created);
    FailedPrecondition when another process holds it for longer than ``wait_s``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                    raise FailedPrecondition(f"{folder} is being written by another trainer (pid {holder}); "
                                             "two trainers never write one job folder") from None
                time.sleep(LOCK_POLL_S)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock (the file stays: unlinking it would race a waiting trainer)
