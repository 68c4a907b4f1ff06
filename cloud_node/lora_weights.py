"""LoRA adapters as plain tensors, applied per request by the packed engine (no peft wrapping).

Many adapters stay resident on one base: each :class:`LoraWeights` holds only its A/B
matrices (a few MB), never a copy of the base. The packed forward adds
``B(A(x)) * scaling`` to a projection's output for the rows of the requests that use the
adapter, the same operations, in the same order, as peft's unmerged LoRA ``Linear``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from cloud_node.lora import ADAPTER_CONFIG, adapter_weights_file, check_adapter_fits
from netgpt.engine import ModelLoadError
from netgpt.errors import one_line

_KEY = re.compile(r"^(?:base_model\.model\.)?model\.layers\.(\d+)\.(self_attn|mlp)\.(\w+)"
                  r"\.lora_([AB])(?:\.\w+)?\.weight$")
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoraPair:
    a: torch.Tensor  # (r, in_features)
    b: torch.Tensor  # (out_features, r)
    scaling: float


@dataclass(frozen=True, eq=False)
class LoraWeights:
    """One adapter's matrices keyed by (layer index, projection name); compared by identity."""

    name: str
    pairs: dict[tuple[int, str], LoraPair]

    def nbytes(self) -> int:
        return sum(p.a.numel() * p.a.element_size() + p.b.numel() * p.b.element_size() for p in self.pairs.values())


def _scaling(config: dict[str, object]) -> float:
    r = config.get("r")
    alpha = config.get("lora_alpha", r)
    if not isinstance(r, int) or r <= 0 or not isinstance(alpha, int | float):
        raise ModelLoadError(f"LoRA adapter config has an invalid r={r!r} or lora_alpha={alpha!r}")
    return float(alpha) / (math.sqrt(r) if config.get("use_rslora") else r)


def _refuse_unsupported(config: dict[str, object], folder: Path) -> None:
    for key in ("rank_pattern", "alpha_pattern"):
        if config.get(key):
            raise ModelLoadError(f"LoRA adapter {folder}: per-module {key} is not supported by the batched engine")
    if config.get("use_dora"):
        raise ModelLoadError(f"LoRA adapter {folder}: DoRA is not supported by the batched engine")
    if config.get("bias", "none") != "none" or config.get("modules_to_save"):
        raise ModelLoadError(f"LoRA adapter {folder}: trained biases or modules_to_save are not supported "
                             "by the batched engine")


def load_lora_weights(adapter_dir: Path, base: torch.nn.Module, dtype: torch.dtype, device: torch.device,
                      name: str = "") -> LoraWeights:
    """Validate ``adapter_dir`` against ``base`` (a LlamaForCausalLM) and load its matrices; ModelLoadError if not."""
    weights = adapter_weights_file(adapter_dir)
    check_adapter_fits(base, weights)  # type: ignore[arg-type]  # any HF causal LM module tree
    config = json.loads((adapter_dir / ADAPTER_CONFIG).read_text())
    _refuse_unsupported(config, adapter_dir)
    scaling = _scaling(config)
    halves: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    try:
        with safe_open(str(weights), framework="pt") as handle:
            for key in handle.keys():
                match = _KEY.match(key)
                if match is None or match.group(3) not in PROJECTIONS:
                    raise ModelLoadError(f"LoRA adapter {adapter_dir}: tensor {key} is not on a LLaMA attention or "
                                         "MLP projection; the batched engine adapts only those")
                slot = (int(match.group(1)), match.group(3))
                halves.setdefault(slot, {})[match.group(4)] = handle.get_tensor(key).to(device=device, dtype=dtype)
    except ModelLoadError:
        raise
    except Exception as exc:  # safetensors raises its own types for corrupt files
        raise ModelLoadError(f"LoRA adapter weights {weights} are unreadable: {one_line(exc)}") from exc
    pairs = {}
    for slot, half in halves.items():
        if set(half) != {"A", "B"} or half["A"].shape[0] != half["B"].shape[1]:
            raise ModelLoadError(f"LoRA adapter {adapter_dir}: layer {slot[0]} {slot[1]} lacks a matching A/B pair")
        pairs[slot] = LoraPair(half["A"], half["B"], scaling)
    return LoraWeights(name or adapter_dir.name, pairs)
