"""A small edge content cache with two policies, simulated for the popularity benchmark
(``bench/popularity_cache.py``); no daemon runs it.

- ``lru``: plain least-recently-used;
- ``popularity``: at each interval boundary :meth:`ContentCache.start_interval` pins (prefetches) the
  ``pin_k`` titles predicted most popular for the interval; pinned titles stay until the next
  boundary, the other slots are LRU.

Hits, misses and prefetches are counted so a benchmark can weigh the hit rate against the
extra fetches the prefetch costs.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from netgpt.errors import InvalidArgument

POLICIES = ("lru", "popularity")


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    prefetched: int = 0  # titles fetched ahead of a request by start_interval

    @property
    def requests(self) -> int:
        return self.hits + self.misses

    @property
    def hit_rate(self) -> float:
        return self.hits / self.requests if self.requests else 0.0


class ContentCache:
    """``capacity`` titles; ``pin_k`` (popularity policy) of them pinned per interval, at most capacity - 1."""

    def __init__(self, capacity: int, policy: str = "lru", pin_k: int = 0) -> None:
        if capacity <= 0:
            raise InvalidArgument(f"capacity must be positive, not {capacity}")
        if policy not in POLICIES:
            raise InvalidArgument(f"policy must be one of {', '.join(POLICIES)}, not {policy!r}")
        if policy == "popularity" and not 0 < pin_k < capacity:
            raise InvalidArgument(f"pin_k must be in 1..{capacity - 1} for the popularity policy, not {pin_k}")
        self.capacity = capacity
        self.policy = policy
        self.pin_k = pin_k if policy == "popularity" else 0
        self.stats = CacheStats()
        self._entries: OrderedDict[str, None] = OrderedDict()  # least recently used first
        self._pinned: set[str] = set()

    def __contains__(self, title: object) -> bool:
        return title in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def pinned(self) -> frozenset[str]:
        return frozenset(self._pinned)

    def request(self, title: str) -> bool:
        """Serve one request: True on a hit; a miss fetches the title in (evicting the LRU unpinned one)."""
        if title in self._entries:
            self._entries.move_to_end(title)
            self.stats.hits += 1
            return True
        self.stats.misses += 1
        self._insert(title)
        return False

    def start_interval(self, ranked: Sequence[str]) -> int:
        """A new interval begins: pin the first ``pin_k`` titles of ``ranked`` (best first), fetching the
        ones not cached; returns how many were fetched. A no-op for the LRU policy."""
        if self.policy != "popularity":
            return 0
        self._pinned = set()
        fetched = 0
        for title in list(dict.fromkeys(ranked))[: self.pin_k]:
            if title not in self._entries:
                self._insert(title)
                fetched += 1
            self._pinned.add(title)
        self.stats.prefetched += fetched
        return fetched

    def _insert(self, title: str) -> None:
        self._entries[title] = None
        self._entries.move_to_end(title)
        while len(self._entries) > self.capacity:
            victim = next(t for t in self._entries if t not in self._pinned and t != title)
            del self._entries[victim]
