"""KV caches for the packed engine: one preallocated buffer per request, bounded by a memory budget.

A request reserves room for its whole answer (prompt + ``max_new_tokens``) when it is
admitted, so a running request never runs out of cache and nothing is ever evicted or
recomputed: the scheduler admits a request only when its reservation fits in what the
running requests leave of ``kv_cache_mb``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class CacheShape:
    layers: int
    kv_heads: int
    head_dim: int
    dtype: torch.dtype
    device: torch.device

    @property
    def bytes_per_token(self) -> int:
        element = torch.empty((), dtype=self.dtype).element_size()
        return 2 * self.layers * self.kv_heads * self.head_dim * element


class RequestCache:
    """Keys and values of one sequence, ``capacity`` positions, filled from position 0."""

    def __init__(self, shape: CacheShape, capacity: int) -> None:
        size = (shape.layers, 1, shape.kv_heads, capacity, shape.head_dim)
        self.keys = torch.empty(size, dtype=shape.dtype, device=shape.device)
        self.values = torch.empty(size, dtype=shape.dtype, device=shape.device)
        self.capacity = capacity
        self.length = 0  # positions already written (by earlier steps)
        self._shape = shape

    def grown(self, capacity: int) -> RequestCache:
        """A copy with room for ``capacity`` positions (single-sequence sessions grow; batched ones reserve)."""
        bigger = RequestCache(self._shape, capacity)
        bigger.keys[:, :, :, : self.length] = self.keys[:, :, :, : self.length]
        bigger.values[:, :, :, : self.length] = self.values[:, :, :, : self.length]
        bigger.length = self.length
        return bigger


class KvBudget:
    """Tokens of KV cache the running requests may reserve in total."""

    def __init__(self, shape: CacheShape, megabytes: float) -> None:
        self.total_tokens = int(megabytes * (1 << 20) // shape.bytes_per_token)
        self.reserved = 0

    def fits(self, tokens: int) -> bool:
        return self.reserved + tokens <= self.total_tokens

    def reserve(self, tokens: int) -> None:
        self.reserved += tokens

    def release(self, tokens: int) -> None:
        self.reserved -= tokens
