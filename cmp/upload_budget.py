"""How much a node (or the core) uploads to others: streams at once, peers at once, a byte rate.

gRPC-free: over a limit is ``ResourceExhausted`` (the fetching node tries another source or
comes back later); the rate is a token bucket the serving loop awaits per chunk. Serving few
peers at a time at full rate (``max_peers``) beats serving all at a trickle: a peer served
whole becomes a source itself, so holders double every transfer time instead of growing by
one per ``max_peers`` transfers. A peer counts as served until it has been idle ``idle_s``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager

from netgpt.errors import ResourceExhausted


class UploadBudget:
    """At most ``max_streams`` uploads at once (0: none), sharing ``rate_bytes_s`` (0: unlimited)."""

    def __init__(self, max_streams: int, rate_bytes_s: float = 0.0, max_peers: int = 0, idle_s: float = 0.3) -> None:
        self.max_streams = max_streams
        self.rate_bytes_s = rate_bytes_s
        self.max_peers = max_peers  # 0: no limit
        self.idle_s = idle_s
        self.active = 0
        self._peers: dict[str, tuple[int, float]] = {}  # peer -> (streams open, when the last one ended)
        self.bytes_served = 0  # every byte sent, for load reports and the fleet benchmark
        self._next_free = time.monotonic()

    @contextmanager
    def stream(self, peer: str = "") -> Iterator[None]:
        """One upload to ``peer`` (empty: an anonymous one, counted against streams only)."""
        if self.active >= self.max_streams:
            raise ResourceExhausted(f"upload budget spent: {self.active} of {self.max_streams} streams busy; "
                                    "try another source or later")
        if peer and self.max_peers and peer not in self._serving():
            if len(self._peers) >= self.max_peers:
                raise ResourceExhausted(f"uploading to {len(self._peers)} other node(s) now "
                                        f"(upload_peers {self.max_peers}); try another source or later")
        self.active += 1
        if peer:
            self._peers[peer] = (self._peers.get(peer, (0, 0.0))[0] + 1, 0.0)
        try:
            yield
        finally:
            self.active -= 1
            if peer:
                self._peers[peer] = (self._peers[peer][0] - 1, time.monotonic())

    def _serving(self) -> dict[str, tuple[int, float]]:
        """Peers with a stream open or one that ended less than ``idle_s`` ago (forgets the others)."""
        now = time.monotonic()
        self._peers = {p: (n, ended) for p, (n, ended) in self._peers.items() if n or now - ended < self.idle_s}
        return self._peers

    async def spend(self, nbytes: int) -> None:
        """Count ``nbytes`` sent; with a rate, wait until the bucket allows them."""
        self.bytes_served += nbytes
        if self.rate_bytes_s <= 0:
            return
        now = time.monotonic()
        self._next_free = max(self._next_free, now) + nbytes / self.rate_bytes_s
        if self._next_free - now > 0.001:
            await asyncio.sleep(self._next_free - now)
