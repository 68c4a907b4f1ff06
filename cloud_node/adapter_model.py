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
from typing import Protocol

from cloud_node.lora_weights import LoraWeights
from cloud_node.packed_forward import PackedLlama, PackedSession
from netgpt.engine import ModelIdentity
from netgpt.generation import DecodeSession, Tokenizer


class AdapterBase(Protocol):
    """What an adapter needs of the base it sits on (:class:`~cloud_node.llama_engine.LlamaModel`).

    A protocol rather than the class itself, so this module does not import the engine that imports it.
    """

    tokenizer: Tokenizer
    max_context: int
    device: str
    dtype: str
    base_dir: Path | None
    lock: threading.Lock

    @property
    def packed(self) -> PackedLlama: ...

    def adapter_view(self, adapter_dir: Path, name: str | None = None, version: str | None = None) -> LlamaAdapter:
        ...


class LlamaAdapter:
    """A deployed LoRA adapter on ``base``: a ``LanguageModel`` that shares the base's weights."""

    def __init__(self, base: AdapterBase, lora: LoraWeights, identity: ModelIdentity, adapter_dir: Path) -> None:
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
