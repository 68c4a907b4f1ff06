"""Prefix reuse at the edge: the keys and values of prompt beginnings this model already prefilled.

Edge prompts share their beginning: a cell's location block, the facts a popular question lists, and,
for a request whose intent the model reads, the whole intent prompt, which its answer prompt starts with
(:mod:`edge_node.serving.prompt_format`). A session's prefill takes the longest cached prefix in whole
blocks (:mod:`netgpt.prefix_trie`), runs only the rest with it as the past, and adds the blocks it
computed. Sessions prefill from worker threads, so the trie is behind a lock; the arrays it holds are
copies, never a buffer ONNX Runtime reuses.

In float32 a reused prefix gives the one-pass prefill's logits to rounding. A dynamically quantised
graph (int8) scales activations per run, so there a prompt is always prefilled ``chunked``: one run per
block (of :data:`CHUNKED_BLOCK` tokens), from the first block not found, whatever is cached. A request's
tokens then never depend on what earlier requests left in the cache (the reason ``int8`` graphs never
batch either).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from netgpt.prefix_trie import DEFAULT_BLOCK, PrefixStats, PrefixTrie

Cache = list[np.ndarray]  # per layer key, value: (1, kv_heads, length, head_dim)
CHUNKED_BLOCK = 32  # a chunked graph's block: each run costs ~2 ms more than one pass (gpt2-124m int8, 1 thread)

__all__ = ["CHUNKED_BLOCK", "DEFAULT_BLOCK", "EdgePrefixCache", "prefill_plan"]


class EdgePrefixCache:
    def __init__(self, bytes_per_token: int, megabytes: float, block: int = DEFAULT_BLOCK,
                 chunked: bool = False) -> None:
        self._trie: PrefixTrie[Cache] = PrefixTrie(int(megabytes * (1 << 20) // (bytes_per_token * block)), block)
        self._lock = threading.Lock()
        self.block = block
        self.chunked = chunked

    def runs(self, start: int, end: int) -> list[tuple[int, int]]:
        """The prefill runs for prompt positions ``start``..``end``: one, or one per block when chunked."""
        if not self.chunked:
            return [(start, end)]
        cuts = [*range(start, end, self.block), end]
        return list(zip(cuts, cuts[1:], strict=False))

    @property
    def stats(self) -> PrefixStats:
        return self._trie.stats

    def __len__(self) -> int:
        return len(self._trie)

    def restore(self, ids: list[int]) -> tuple[int, Cache]:
        """The longest cached prefix of ``ids`` (at least one token left to prefill): its length in tokens
        and its past, each layer's blocks joined (fresh arrays); ``(0, [])`` when none is kept."""
        with self._lock:
            found = self._trie.longest(None, ids)
        if not found:
            return 0, []
        return len(found) * self.block, [np.concatenate([blocks[k] for blocks in found], axis=2)
                                         for k in range(len(found[0]))]

    def store(self, ids: list[int], present: Callable[[], Cache]) -> None:
        """Keep the whole blocks of prompt ``ids`` the trie lacks; ``present()`` gives the cache after its
        prefill (called at most once, and only when a block is missing)."""
        b, arrays = self.block, Cache()

        def block(n: int) -> Cache:
            if not arrays:
                arrays.extend(present())
            return [a[:, :, n * b:(n + 1) * b, :].copy() for a in arrays]

        with self._lock:
            self._trie.store(None, ids, block)


def prefill_plan(prefixes: EdgePrefixCache | None, ids: list[int]) -> tuple[Cache, list[tuple[int, int]]]:
    """How a session prefills ``ids``: the past to start from (``[]``: none) and the runs of positions after it
    (the first starts where the past ends). Without a cache: one run from position 0."""
    if prefixes is None:
        return [], [(0, len(ids))]
    reused, past = prefixes.restore(ids)
    return past, prefixes.runs(reused, len(ids))
