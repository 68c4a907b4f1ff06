"""A LoRA adapter resident on an already loaded base: the cloud's unit of hot swap.

Deploying an adapter loads only its matrices (:mod:`cloud_node.lora_weights`); the
:class:`LlamaAdapter` shares the base's weights and packed engine, so any number of
adapters stay loaded on one base and requests for different ones share forward passes.
A request pins its ``Served`` model when it starts, so a swap or rollback changes what
new requests get while running ones finish on the adapter they started with; an
adapter's matrices are freed when the last reference (slot or request) lets go.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cloud_node.lora_weights import LoraWeights
from cloud_node.packed_forward import PackedLlama, Segment
from netgpt.engine import ModelIdentity
from netgpt.generation import DecodeSession

if TYPE_CHECKING:
    from cloud_node.llama_engine import LlamaModel

_FIRST_ROOM = 64  # decode positions a single-sequence cache starts with beyond the prompt; doubled when full


class PackedSession:
    """A single-sequence :class:`DecodeSession` on the packed engine (the unbatched path), under the base's lock."""

    def __init__(self, packed: PackedLlama, lora: LoraWeights | None, lock: threading.Lock) -> None:
        self._packed, self._lora, self._lock = packed, lora, lock
        self._cache = packed.new_cache(1)

    def prefill(self, input_ids: list[int]) -> np.ndarray:
        self._cache = self._packed.new_cache(len(input_ids) + _FIRST_ROOM)
        return self._run(input_ids)

    def advance(self, token_id: int) -> np.ndarray:
        if self._cache.length + 1 > self._cache.capacity:
            self._cache = self._cache.grown(2 * self._cache.capacity)
        return self._run([token_id])

    def _run(self, ids: list[int]) -> np.ndarray:
        with self._lock:
            logits: np.ndarray = self._packed.forward([Segment(self._cache, ids, self._lora)])[0].cpu().numpy()
        return logits


class LlamaAdapter:
    """A deployed LoRA adapter on ``base``: a ``LanguageModel`` that shares the base's weights."""

    def __init__(self, base: LlamaModel, lora: LoraWeights, identity: ModelIdentity, adapter_dir: Path) -> None:
        self.base = base
        self.lora: LoraWeights | None = lora
        self.identity = identity
        self.adapter_dir = adapter_dir
        self.tokenizer = base.tokenizer
        self.max_context = base.max_context
        self.device, self.dtype, self.base_dir = base.device, base.dtype, base.base_dir

    @property
    def packed(self) -> PackedLlama:
        return self.base.packed

    def new_session(self) -> DecodeSession:
        return PackedSession(self.packed, self.lora, self.base.lock)

    def adapter_view(self, adapter_dir: Path, name: str | None = None, version: str | None = None) -> LlamaAdapter:
        """Another adapter on the same base (deploys onto a node serving an adapter load onto its base)."""
        return self.base.adapter_view(adapter_dir, name, version)
