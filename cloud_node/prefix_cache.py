"""Prefix reuse: the keys and values of prompt beginnings that earlier requests already computed.

Comprehensive prompts share their beginning (the chat template's system turn, the instructions, the
location block of a cell), and a prefix's keys and values depend only on its tokens, their positions
(always from 0) and the adapter that projected them. So they are kept per adapter in a trie of
blocks of ``block`` tokens: a request's prompt walks it block by block, copies every block it finds
into its own cache and prefills only the rest (at least one token, whose logits it needs). After its
prompt is prefilled, the blocks it computed and the trie lacks are added. Least recently used leaves
are evicted to stay within ``megabytes``; a block is never evicted before the blocks after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import count

import torch

from cloud_node.kv_cache import CacheShape, RequestCache

DEFAULT_BLOCK = 16


@dataclass(eq=False)
class _Block:
    keys: torch.Tensor  # (layers, 1, kv_heads, block, head_dim)
    values: torch.Tensor
    siblings: dict[tuple[int, ...], _Block]  # the dict it lives in (its parent's children, or a root)
    tokens: tuple[int, ...]
    used: int
    children: dict[tuple[int, ...], _Block] = field(default_factory=dict)


@dataclass
class PrefixStats:
    lookups: int = 0
    reused_tokens: int = 0  # prompt tokens not prefilled because their blocks were found
    prompt_tokens: int = 0  # prompt tokens of every lookup
    stored_blocks: int = 0
    evicted_blocks: int = 0


class PrefixCache:
    def __init__(self, shape: CacheShape, megabytes: float, block: int = DEFAULT_BLOCK) -> None:
        self.block = block
        self.capacity = int(megabytes * (1 << 20) // (shape.bytes_per_token * block))  # blocks
        self.stats = PrefixStats()
        self._roots: dict[object, dict[tuple[int, ...], _Block]] = {}  # adapter (None: the base) → first blocks
        self._blocks: list[_Block] = []
        self._ticks = count()

    def __len__(self) -> int:
        return len(self._blocks)

    def restore(self, adapter: object, ids: list[int], cache: RequestCache) -> int:
        """Copy the longest cached prefix of ``ids`` (whole blocks, at least one token left over) into the
        empty ``cache``; return its length in tokens (what the request need not prefill)."""
        b, found = self.block, 0
        level = self._roots.get(adapter, {})
        while (found + 1) * b < len(ids):
            node = level.get(tuple(ids[found * b:(found + 1) * b]))
            if node is None:
                break
            cache.keys[:, :, :, found * b:(found + 1) * b] = node.keys
            cache.values[:, :, :, found * b:(found + 1) * b] = node.values
            node.used = next(self._ticks)
            found, level = found + 1, node.children
        cache.length = found * b
        self.stats.lookups += 1
        self.stats.prompt_tokens += len(ids)
        self.stats.reused_tokens += found * b
        return found * b

    def store(self, adapter: object, ids: list[int], cache: RequestCache) -> None:
        """Add the whole blocks of prompt ``ids``, whose keys and values ``cache`` holds, that are not kept yet."""
        if self.capacity <= 0:
            return
        b = self.block
        level = self._roots.setdefault(adapter, {})
        path: list[_Block] = []
        for n in range(len(ids) // b):
            tokens = tuple(ids[n * b:(n + 1) * b])
            node = level.get(tokens)
            if node is None:
                if len(self._blocks) >= self.capacity and not self._evict(keep=path):
                    break
                node = _Block(cache.keys[:, :, :, n * b:(n + 1) * b].clone(),
                              cache.values[:, :, :, n * b:(n + 1) * b].clone(), level, tokens, 0)
                level[tokens] = node
                self._blocks.append(node)
                self.stats.stored_blocks += 1
            node.used = next(self._ticks)
            path.append(node)
            level = node.children
        for emptied in [a for a, first in self._roots.items() if not first]:
            del self._roots[emptied]  # an adapter swapped out leaves nothing behind

    def _evict(self, keep: list[_Block]) -> bool:
        """Drop the least recently used leaf not on ``keep``; False when there is none."""
        leaves = [node for node in self._blocks if not node.children and not any(node is k for k in keep)]
        if not leaves:
            return False
        victim = min(leaves, key=lambda node: node.used)
        del victim.siblings[victim.tokens]
        self._blocks.remove(victim)
        self.stats.evicted_blocks += 1
        return True
