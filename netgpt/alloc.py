"""Allocator settings for bulk transfers (glibc only; a no-op elsewhere).

Every 1 MiB chunk of a transfer passes through several short-lived 1 MiB buffers (the
file read, the protobuf message, its serialisation, gRPC's slices). With glibc's defaults
those come from fresh ``mmap``s or a heap that is trimmed back after each free, so each
buffer is page-faulted and zeroed again: profiled with py-spy, that churn (``brk``, page
faults inside ``memcpy``) was the largest cost of a publish on the client, about 3 of its
4.4 CPU seconds per GiB. Serving such buffers from a heap that is kept (mmap threshold 8 MiB,
trim threshold 128 MiB, 16 MiB top pad) roughly doubled publish and fetch throughput in
``bench.distribution``. The cost is that up to ~128 MiB of freed heap stays mapped.

The second cost was Python's cyclic collector: every message of a stream allocates a few
objects, so full collections ran often, each walking every object the process imported
(9% of the core's CPU during a publish). Objects alive when a process starts serving are
frozen out of collection (``gc.freeze``); later garbage is collected as before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys

import structlog

log = structlog.get_logger(__name__)

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
SETTINGS = {_M_MMAP_THRESHOLD: 8 << 20, _M_TRIM_THRESHOLD: 128 << 20, _M_TOP_PAD: 16 << 20}
_done = False


def tune_for_transfers() -> bool:
    """Freeze the objects alive now, apply :data:`SETTINGS`; once per process. True when glibc took them."""
    global _done
    if _done:
        return True
    _done = True
    gc.freeze()  # what the process imported and built so far lives until exit: stop re-walking it
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    applied = all(mallopt(param, value) == 1 for param, value in SETTINGS.items())
    log.debug("alloc.tuned", applied=applied)
    return applied
