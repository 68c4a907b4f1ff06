"""Millisecond stopwatch for latency splits."""

from __future__ import annotations

import time


class Stopwatch:
    def __init__(self) -> None:
        self._start = time.perf_counter()

    def ms(self) -> float:
        """Milliseconds since the stopwatch started."""
        return (time.perf_counter() - self._start) * 1000.0

