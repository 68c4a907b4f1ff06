"""What the benches share to time a call."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    """(seconds ``fn()`` took, what it returned)."""
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result
