"""One forward pass over many requests at once, without padding: the packed LLaMA engine.

The new tokens of every request in a step (one for a decoding request, a chunk of the
prompt for a prefilling one) are concatenated into one sequence. Everything that is
per token (embeddings, norms, projections, MLP, LM head) runs once over the packed
rows, which is where batching gains; attention runs per request against that request's
own :class:`~cloud_node.kv_cache.RequestCache`, with the request's own positions, so no
request ever sees another's tokens and no padding enters any reduction.

Requests using different LoRA adapters share the pass: each row adds its own adapter's
``B(A(x)) * scaling`` to the projections it adapts (peft's unmerged LoRA arithmetic); with
two or more adapters in a step, all of them in two matmuls per projection
(:mod:`cloud_node.mixed_lora`). The base weights are the HF model's own modules, used
read-only; when the HF model carries a peft adapter of its own, its ``base_layer`` is used.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaForCausalLM, apply_rotary_pos_emb

from cloud_node.kv_cache import CacheShape, RequestCache
from cloud_node.lora_weights import LoraWeights
from cloud_node.mixed_lora import GroupLora, StackCache, StepLora, step_lora


@dataclass
class Segment:
    """One request's share of a packed step: ``ids`` appended after what its cache holds."""

    cache: RequestCache
    ids: list[int]
    lora: LoraWeights | None
    wants_logits: bool = True  # False for a prompt chunk that is not the prompt's last


def _base_linear(module: torch.nn.Module) -> torch.nn.Module:
    base = getattr(module, "base_layer", None)  # a peft LoRA layer wraps the base Linear
    return base if isinstance(base, torch.nn.Module) else module


class PackedLlama:
    """The packed forward over a loaded HF LLaMA (``LlamaForCausalLM``, optionally peft-wrapped)."""

    def __init__(self, hf_model: torch.nn.Module, device: torch.device) -> None:
        get_base_model = getattr(hf_model, "get_base_model", None)  # a peft wrapper's
        # torch types a submodule reached by attribute as Tensor | Module: name the LLaMA classes the model is built of
        causal = cast(LlamaForCausalLM, get_base_model() if get_base_model is not None else hf_model)
        self.hf_model = causal  # the module tree LoRA adapters are validated against
        inner = causal.model
        config = causal.config
        self.device = device
        self.dtype = next(causal.parameters()).dtype
        self.embed = inner.embed_tokens
        self.rotary = inner.rotary_emb
        self.norm = inner.norm
        self.lm_head = _base_linear(causal.lm_head)
        self._head_t = _transposed_head(self.lm_head, device)
        self.layers = cast(list[LlamaDecoderLayer], list(inner.layers))
        self.heads = int(config.num_attention_heads)
        self.kv_heads = int(config.num_key_value_heads or config.num_attention_heads)
        self.head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // self.heads)
        self.scaling = self.head_dim**-0.5
        self.vocab_size = int(config.vocab_size)
        self.cache_shape = CacheShape(len(self.layers), self.kv_heads, self.head_dim, self.dtype, device)
        self._linears = [
            {name: _base_linear(getattr(layer.self_attn if name.endswith(("q_proj", "k_proj", "v_proj", "o_proj"))
                                        else layer.mlp, name))
             for name in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")}
            for layer in self.layers
        ]
        self._act = self.layers[0].mlp.act_fn if self.layers else None
        self._stacks = StackCache()

    def new_cache(self, capacity: int) -> RequestCache:
        return RequestCache(self.cache_shape, capacity)

    @torch.inference_mode()
    def forward(self, segments: Sequence[Segment]) -> torch.Tensor:
        """Run one packed step; return float32 last-position logits, one row per segment that wants them.

        Each segment's cache grows by its ``len(ids)``; the caller guarantees the capacity.
        """
        ids: list[int] = []
        positions: list[int] = []
        bounds: list[tuple[int, int]] = []
        for segment in segments:
            start = len(ids)
            ids.extend(segment.ids)
            positions.extend(range(segment.cache.length, segment.cache.length + len(segment.ids)))
            bounds.append((start, len(ids)))
        lora = step_lora(_lora_groups(segments, bounds), len(ids), self.device, self._stacks)
        input_ids = torch.tensor([ids], dtype=torch.long, device=self.device)
        position_ids = torch.tensor([positions], dtype=torch.long, device=self.device)
        hidden = self.embed(input_ids)
        cos, sin = self.rotary(hidden, position_ids)
        masks = [_chunk_mask(segment, self.device) for segment in segments]
        for index, layer in enumerate(self.layers):
            linears = self._linears[index]
            residual = hidden
            x = layer.input_layernorm(hidden)
            hidden = residual + self._attention(index, linears, x, cos, sin, segments, bounds, masks, lora)
            residual = hidden
            x = layer.post_attention_layernorm(hidden)
            gate = _project(linears["gate_proj"], x, lora, index, "gate_proj")
            up = _project(linears["up_proj"], x, lora, index, "up_proj")
            act = self._act(gate)  # type: ignore[misc]  # None only when there are no layers to loop over
            hidden = residual + _project(linears["down_proj"], act * up, lora, index, "down_proj")
        for segment in segments:
            segment.cache.length += len(segment.ids)
        last = [end - 1 for (_, end), segment in zip(bounds, segments, strict=True) if segment.wants_logits]
        picked = self.norm(hidden[0, last])
        logits: torch.Tensor = picked @ self._head_t if self._head_t is not None else self.lm_head(picked)
        return logits.float()

    def _attention(self, index: int, linears: dict[str, torch.nn.Module], x: torch.Tensor, cos: torch.Tensor,
                   sin: torch.Tensor, segments: Sequence[Segment], bounds: list[tuple[int, int]],
                   masks: list[torch.Tensor | None], lora: GroupLora | StepLora) -> torch.Tensor:
        total = x.shape[1]
        q = _project(linears["q_proj"], x, lora, index, "q_proj").view(1, total, self.heads, self.head_dim)
        k = _project(linears["k_proj"], x, lora, index, "k_proj").view(1, total, self.kv_heads, self.head_dim)
        v = _project(linears["v_proj"], x, lora, index, "v_proj").view(1, total, self.kv_heads, self.head_dim)
        q, k = apply_rotary_pos_emb(q.transpose(1, 2), k.transpose(1, 2), cos, sin)
        v = v.transpose(1, 2)
        outputs = []
        for segment, (start, end), mask in zip(segments, bounds, masks, strict=True):
            cache, past = segment.cache, segment.cache.length
            now = past + end - start
            cache.keys[index, :, :, past:now] = k[:, :, start:end]
            cache.values[index, :, :, past:now] = v[:, :, start:end]
            outputs.append(F.scaled_dot_product_attention(
                q[:, :, start:end], cache.keys[index, :, :, :now], cache.values[index, :, :, :now],
                attn_mask=mask, is_causal=mask is None and end - start > 1, scale=self.scaling,
                enable_gqa=self.kv_heads != self.heads))
        attended = torch.cat(outputs, dim=2) if len(outputs) > 1 else outputs[0]
        merged = attended.transpose(1, 2).reshape(1, total, self.heads * self.head_dim)
        return _project(linears["o_proj"], merged, lora, index, "o_proj")


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


def _transposed_head(lm_head: torch.nn.Module, device: torch.device) -> torch.Tensor | None:
    """A contiguous copy of the LM head's weight, transposed, on CPU (else None).

    The head is the largest matmul of a decode step (vocab × hidden) and on CPU BLAS runs
    ``x @ Wᵀ`` against the row-major weight at about half the speed of ``x @ W_t`` against a
    contiguous transposed copy for the few rows a step has (measured: 7.6 vs 3.5 ms for 32000 ×
    512 at one row, 15 vs 10.5 ms at eight; ``bench.cloud_batching``). The copy costs one more
    head's worth of memory (a tied head shares its weight with the embeddings, the copy does not).
    """
    weight = getattr(lm_head, "weight", None)
    if device.type != "cpu" or not isinstance(weight, torch.Tensor) or getattr(lm_head, "bias", None) is not None:
        return None
    return weight.detach().t().contiguous()


def _chunk_mask(segment: Segment, device: torch.device) -> torch.Tensor | None:
    """Causal mask for a prompt chunk after earlier chunks (SDPA's is_causal aligns top-left)."""
    past, length = segment.cache.length, len(segment.ids)
    if past == 0 or length == 1:
        return None
    rows = torch.arange(length, device=device).unsqueeze(1) + past
    return torch.arange(past + length, device=device).unsqueeze(0) <= rows


def _lora_groups(segments: Sequence[Segment], bounds: list[tuple[int, int]]) -> list[tuple[int, int, LoraWeights]]:
    """Row ranges of consecutive segments that share an adapter (callers order segments by adapter)."""
    groups: list[tuple[int, int, LoraWeights]] = []
    for segment, (start, end) in zip(segments, bounds, strict=True):
        if segment.lora is None:
            continue
        if groups and groups[-1][2] is segment.lora and groups[-1][1] == start:
            groups[-1] = (groups[-1][0], end, segment.lora)
        else:
            groups.append((start, end, segment.lora))
    return groups


def _project(linear: torch.nn.Module, x: torch.Tensor, lora: GroupLora | StepLora, layer: int,
             name: str) -> torch.Tensor:
    y: torch.Tensor = linear(x)
    lora.add(y, x, layer, name)
    return y
