"""Prefix reuse in the cloud: the keys and values of prompt beginnings that earlier requests already
computed, per adapter (:mod:`netgpt.prefix_trie`). A request's prompt copies every block found into its
own cache and prefills only the rest; after its prompt is prefilled, the blocks it computed and the trie
lacks are added, within ``megabytes``.
"""

from __future__ import annotations

import torch

from cloud_node.kv_cache import CacheShape, RequestCache
from netgpt.prefix_trie import DEFAULT_BLOCK, PrefixStats, PrefixTrie

KV = tuple[torch.Tensor, torch.Tensor]  # a block's keys and values: (layers, 1, kv_heads, block, head_dim)

__all__ = ["DEFAULT_BLOCK", "PrefixCache", "PrefixStats"]


class PrefixCache:
    def __init__(self, shape: CacheShape, megabytes: float, block: int = DEFAULT_BLOCK) -> None:
        self._trie: PrefixTrie[KV] = PrefixTrie(int(megabytes * (1 << 20) // (shape.bytes_per_token * block)), block)
        self.block, self.capacity, self.stats = block, self._trie.capacity, self._trie.stats

    def __len__(self) -> int:
        return len(self._trie)

    def restore(self, adapter: object, ids: list[int], cache: RequestCache) -> int:
        """Copy the longest cached prefix of ``ids`` (whole blocks, at least one token left over) into the
        empty ``cache``; return its length in tokens (what the request need not prefill)."""
        b = self.block
        found = self._trie.longest(adapter, ids)
        for n, (keys, values) in enumerate(found):
            cache.keys[:, :, :, n * b:(n + 1) * b] = keys
            cache.values[:, :, :, n * b:(n + 1) * b] = values
        cache.length = len(found) * b
        return cache.length

    def store(self, adapter: object, ids: list[int], cache: RequestCache) -> None:
        """Add the whole blocks of prompt ``ids``, whose keys and values ``cache`` holds, that are not kept yet."""
        b = self.block
        self._trie.store(adapter, ids, lambda n: (cache.keys[:, :, :, n * b:(n + 1) * b].clone(),
                                                  cache.values[:, :, :, n * b:(n + 1) * b].clone()))
