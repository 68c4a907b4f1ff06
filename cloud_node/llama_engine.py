"""The cloud node's LLaMA engine: a local HF LLaMA folder (+ optional LoRA) on torch.

Two ways to run it:

- batched (``batching = true``, the default): :attr:`LlamaModel.packed` is the packed
  engine the cloud's :class:`~cloud_node.scheduler.BatchScheduler` drives, one forward
  pass for every running request, whatever LoRA adapter each uses
  (:meth:`LlamaModel.adapter_view` puts another adapter on the same base weights);
- serialised (``batching = false``): :meth:`LlamaModel.new_session`, one HF forward per
  token per request. Each session owns its KV cache, but forward passes through the shared
  module are serialised by one lock per model (:class:`LockedSession`), so concurrent
  requests interleave token by token instead of running in parallel.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import cast

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from cloud_node.adapter_model import LlamaAdapter
from cloud_node.lora import adapter_weights_file, attach_lora_adapter
from cloud_node.lora_weights import LoraWeights, load_lora_weights
from cloud_node.packed_forward import PackedLlama, PackedSession
from netgpt.engine import ModelIdentity, ModelLoadError, read_hf_config
from netgpt.errors import one_line
from netgpt.generation import DecodeSession, Tokenizer
from netgpt.hashing import sha256_of_files
from netgpt.torch_decode import TorchDecodeSession

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str) -> torch.device:
    """``auto`` → cuda when available, else cpu; explicit cuda without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise ModelLoadError(f"unknown device {device!r}: {one_line(exc)}") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"device {device!r} requested but CUDA is not available")
    return resolved


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto`` → bfloat16 on CUDA that supports it, else float32."""
    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if dtype not in _DTYPES:
        raise ModelLoadError(f"unknown dtype {dtype!r}; expected auto or {', '.join(_DTYPES)}")
    return _DTYPES[dtype]


class LockedSession:
    """A :class:`TorchDecodeSession` whose forward passes hold the model's lock."""

    def __init__(self, inner: DecodeSession, lock: threading.Lock) -> None:
        self._inner = inner
        self._lock = lock

    def prefill(self, input_ids: list[int]) -> np.ndarray:
        with self._lock:
            return self._inner.prefill(input_ids)

    def advance(self, token_id: int) -> np.ndarray:
        with self._lock:
            return self._inner.advance(token_id)


class LlamaModel:
    """A loaded LLaMA (optionally with an unmerged LoRA adapter) implementing ``LanguageModel``."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Tokenizer,
        identity: ModelIdentity,
        max_context: int,
        device: torch.device,
        adapter_dir: Path | None = None,
        base_dir: Path | None = None,
        merged: bool = False,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.identity = identity
        self.max_context = max_context
        self.torch_device = device
        self.device = str(device)
        self.dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
        self.adapter_dir = adapter_dir
        self.base_dir = base_dir  # where the base checkpoint came from: deployed adapters load onto it
        self.lock = threading.Lock()  # held for every single-sequence forward pass (see module docstring)
        self.merged = merged  # the adapter is folded into the weights: nothing to apply per request
        self._packed: PackedLlama | None = None
        self._lora: LoraWeights | None = None

    @property
    def packed(self) -> PackedLlama:
        """The packed (batching) engine over this model's base weights, built on first use."""
        if self._packed is None:
            self._packed = PackedLlama(self.model, self.torch_device)
        return self._packed

    @property
    def lora(self) -> LoraWeights | None:
        """The adapter this model was loaded with, as the packed engine applies it (None: base only or merged)."""
        if self.adapter_dir is None or self.merged:
            return None
        if self._lora is None:
            self._lora = load_lora_weights(self.adapter_dir, self.packed.hf_model, self.packed.dtype,
                                           self.torch_device, self.identity.name)
        return self._lora

    def adapter_view(self, adapter_dir: Path, name: str | None = None, version: str | None = None) -> LlamaAdapter:
        """Load the LoRA adapter in ``adapter_dir`` onto these base weights (no copy of the base); ModelLoadError."""
        if self.base_dir is None:
            raise ModelLoadError("this cloud model was not loaded from a base checkpoint folder")
        adapter_dir = Path(adapter_dir)
        lora = load_lora_weights(adapter_dir, self.packed.hf_model, self.packed.dtype, self.torch_device,
                                 name or adapter_dir.name)
        sha = sha256_of_files([*sorted(self.base_dir.glob("*.safetensors")), adapter_weights_file(adapter_dir)])
        identity = ModelIdentity(name=name or adapter_dir.resolve().name, version=version or sha[:12], sha256=sha)
        return LlamaAdapter(self, lora, identity, adapter_dir)

    @classmethod
    def load(
        cls,
        model_dir: Path,
        adapter_dir: Path | None = None,
        device: str = "auto",
        dtype: str = "auto",
        name: str | None = None,
        version: str | None = None,
        merge: bool = False,
    ) -> LlamaModel:
        """Load and validate a local LLaMA folder (and LoRA adapter); raise ModelLoadError on any problem.

        ``merge=True`` folds the adapter into the base weights (slightly faster decode,
        but the adapter can no longer be swapped out).
        """
        model_dir = Path(model_dir)
        config = read_hf_config(model_dir, ("llama",))
        adapter_dir = Path(adapter_dir) if adapter_dir is not None else None
        adapter_weights = adapter_weights_file(adapter_dir) if adapter_dir is not None else None
        torch_device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, torch_device)
        try:
            # transformers types decode() for batches too (str | list[str]); for one id list it returns str
            tokenizer = cast(Tokenizer, AutoTokenizer.from_pretrained(model_dir))
        except Exception as exc:  # tokenizers/transformers raise many types; report one line
            raise ModelLoadError(f"cannot load tokenizer from {model_dir}: {one_line(exc)}") from exc
        try:
            base: PreTrainedModel = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch_dtype)
        except Exception as exc:
            raise ModelLoadError(f"cannot load LLaMA weights from {model_dir}: {one_line(exc)}") from exc
        model: torch.nn.Module = base
        if adapter_dir is not None:
            model = attach_lora_adapter(base, adapter_dir)
            if merge:
                model = model.merge_and_unload()
        try:
            model = model.to(torch_device).eval()
        except RuntimeError as exc:  # includes CUDA out-of-memory
            raise ModelLoadError(f"cannot move model to {torch_device}: {one_line(exc)}") from exc

        weight_files = sorted(model_dir.glob("*.safetensors"))
        if adapter_weights is not None:
            weight_files.append(adapter_weights)
        sha = sha256_of_files(weight_files)
        identity = ModelIdentity(name=name or model_dir.resolve().name, version=version or sha[:12], sha256=sha)
        max_context = int(config.get("max_position_embeddings") or 2048)
        return cls(model, tokenizer, identity, max_context, torch_device, adapter_dir, model_dir,
                   merged=merge and adapter_dir is not None)

    def new_session(self) -> DecodeSession:
        """A fresh decoder with its own KV cache; safe to drive from any worker thread."""
        # a PreTrainedModel, or peft's wrapper of one (it forwards .config and the call to the model inside)
        return LockedSession(TorchDecodeSession(cast(PreTrainedModel, self.model), self.torch_device), self.lock)

    def new_packed_session(self) -> DecodeSession:
        """A single-sequence decoder on the packed engine: what a batch of one computes."""
        return PackedSession(self.packed, self.lora, self.lock)
