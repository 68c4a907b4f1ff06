"""Millisecond stopwatch for latency splits, and polling for readiness."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class Stopwatch:
    def __init__(self) -> None:
        self._start = time.perf_counter()

    def ms(self) -> float:
        """Milliseconds since the stopwatch started."""
        return (time.perf_counter() - self._start) * 1000.0


async def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.05) -> None:
    """Poll ``predicate`` until true; TimeoutError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")
        await asyncio.sleep(poll_s)
