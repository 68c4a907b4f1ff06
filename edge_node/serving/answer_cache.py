"""Finished cloud answers, reused for identical comprehensive prompts (TTL + size bound, LRU).

Each entry remembers the UEs whose requests it answered (its owners), so erasing a user
(DeleteProfile) can drop every answer derived from their requests.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable

from netgpt.v1 import user_plane_pb2 as up_pb2
from up.events import Event


def request_key(forward: up_pb2.GenerateRequest, model_tag: str = "") -> str | None:
    """Identity of a cloud request's answer; None when the answer is not reproducible (unseeded sampling).

    ``model_tag`` names the model version that would answer, so a cloud deploy never
    replays answers of the previous version.
    """
    params = forward.params
    if params.temperature > 0 and params.top_k != 1 and not params.HasField("seed"):
        return None
    canonical = up_pb2.GenerateRequest(prompt=forward.prompt, params=params, task=forward.task)
    return hashlib.sha256(canonical.SerializeToString(deterministic=True) + model_tag.encode()).hexdigest()


class AnswerCache:
    def __init__(self, ttl_s: float = 60.0, max_entries: int = 1024,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, list[Event], set[str]]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0 and self.ttl_s > 0

    def get(self, key: str, owner: str = "") -> list[Event] | None:
        """The cached answer, now also owned by ``owner`` (the UE it is replayed to)."""
        entry = self._entries.get(key)
        if entry is not None and self._clock() - entry[0] > self.ttl_s:
            del self._entries[key]
            entry = None
        if entry is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        if owner:
            entry[2].add(owner)
        return entry[1]

    def put(self, key: str, events: list[Event], owners: set[str] | None = None) -> None:
        if not self.enabled:
            return
        self._entries[key] = (self._clock(), events, set(owners or ()))
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def forget(self, owner: str) -> int:
        """Drop every answer ``owner``'s requests got; how many were dropped."""
        keys = [key for key, entry in self._entries.items() if owner in entry[2]]
        for key in keys:
            del self._entries[key]
        return len(keys)

    def __len__(self) -> int:
        return len(self._entries)
