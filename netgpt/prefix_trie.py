"""Prompt beginnings already computed: a trie of token blocks, each holding what its tokens produced.

Prompts share their beginning (a chat template's system turn, instructions, a cell's location block,
an edge's intent prompt that its answer prompt starts with), and the keys and values of a prefix depend
only on its tokens, their positions (always from 0) and the weights that projected them. So they are
kept per ``scope`` (an adapter, a model version) in a trie of blocks of ``block`` tokens: a prompt walks
it block by block and takes every block it finds; after it is prefilled, the blocks the trie lacks are
added. What a block holds is the caller's (torch tensors in the cloud, numpy arrays at the edge).
Least recently used leaves are evicted to stay within ``capacity`` blocks; a block is never evicted
before the blocks after it. Not thread-safe: callers serialise.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from itertools import count
from typing import Generic, TypeVar

P = TypeVar("P")  # what a block holds
DEFAULT_BLOCK = 16


@dataclass(eq=False)
class _Block(Generic[P]):
    payload: P
    siblings: dict[tuple[int, ...], _Block[P]]  # the dict it lives in (its parent's children, or a root)
    tokens: tuple[int, ...]
    used: int
    children: dict[tuple[int, ...], _Block[P]] = field(default_factory=dict)


@dataclass
class PrefixStats:
    lookups: int = 0
    reused_tokens: int = 0  # prompt tokens not prefilled because their blocks were found
    prompt_tokens: int = 0  # prompt tokens of every lookup
    stored_blocks: int = 0
    evicted_blocks: int = 0


class PrefixTrie(Generic[P]):
    def __init__(self, capacity: int, block: int = DEFAULT_BLOCK) -> None:
        self.block = block
        self.capacity = capacity  # blocks
        self.stats = PrefixStats()
        self._roots: dict[Hashable, dict[tuple[int, ...], _Block[P]]] = {}
        self._blocks: list[_Block[P]] = []
        self._ticks = count()

    def __len__(self) -> int:
        return len(self._blocks)

    def longest(self, scope: Hashable, ids: list[int]) -> list[P]:
        """The payloads of the longest cached prefix of ``ids`` in whole blocks, leaving at least one token
        to prefill (the caller needs its logits)."""
        b, found = self.block, list[P]()
        level = self._roots.get(scope, {})
        while (len(found) + 1) * b < len(ids):
            node = level.get(tuple(ids[len(found) * b:(len(found) + 1) * b]))
            if node is None:
                break
            node.used = next(self._ticks)
            found.append(node.payload)
            level = node.children
        self.stats.lookups += 1
        self.stats.prompt_tokens += len(ids)
        self.stats.reused_tokens += len(found) * b
        return found

    def store(self, scope: Hashable, ids: list[int], payload: Callable[[int], P]) -> None:
        """Add the whole blocks of prompt ``ids`` the trie lacks; ``payload(n)`` makes block ``n``'s."""
        if self.capacity <= 0:
            return
        b = self.block
        level = self._roots.setdefault(scope, {})
        path: list[_Block[P]] = []
        for n in range(len(ids) // b):
            tokens = tuple(ids[n * b:(n + 1) * b])
            node = level.get(tokens)
            if node is None:
                if len(self._blocks) >= self.capacity and not self._evict(keep=path):
                    break
                node = _Block(payload(n), level, tokens, 0)
                level[tokens] = node
                self._blocks.append(node)
                self.stats.stored_blocks += 1
            node.used = next(self._ticks)
            path.append(node)
            level = node.children
        for emptied in [s for s, first in self._roots.items() if not first]:
            del self._roots[emptied]  # a scope swapped out leaves nothing behind

    def _evict(self, keep: list[_Block[P]]) -> bool:
        """Drop the least recently used leaf not on ``keep``; False when there is none."""
        leaves = [node for node in self._blocks if not node.children and not any(node is k for k in keep)]
        if not leaves:
            return False
        victim = min(leaves, key=lambda node: node.used)
        del victim.siblings[victim.tokens]
        self._blocks.remove(victim)
        self.stats.evicted_blocks += 1
        return True
