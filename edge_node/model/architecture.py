"""What the edge's ONNX path needs to know about a decoder architecture, read from its config.json.

The export, the engine, the batcher, the quality gate and the parity check all speak one graph
signature (see :mod:`edge_node.model.onnx_export`); what differs between GPT-2 and the LLaMA
family is only the shape of the KV cache, the context limit, the config keys those come from and
the torch class to load. :class:`DecoderSpec` carries exactly that, so no code path is written
twice. LLaMA uses grouped-query attention: its cache has ``num_key_value_heads`` heads (SmolLM2:
3), not the query heads (9), and ``head_dim`` may be set apart from ``hidden_size / heads``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netgpt.engine import ModelLoadError, read_hf_config

EDGE_MODEL_TYPES = ("gpt2", "llama")
# RoPE variants the exported graph reproduces (parity-checked); others (e.g. "dynamic", which rescales with the
# sequence length at run time) are refused with the folder named rather than exported wrongly.
SUPPORTED_ROPE = frozenset({"default", "linear", "llama3"})


@dataclass(frozen=True)
class DecoderSpec:
    """The per-architecture facts of a decoder-only LM, in the edge graph's terms."""

    model_type: str  # gpt2 | llama
    n_layer: int
    kv_heads: int  # heads of the KV cache (LLaMA GQA: the KV heads, not the query heads)
    head_dim: int
    vocab_size: int
    max_context: int  # positions the model was trained for

    def as_meta(self) -> dict[str, object]:
        return {"model_type": self.model_type, "n_layer": self.n_layer, "kv_heads": self.kv_heads,
                "head_dim": self.head_dim, "vocab_size": self.vocab_size, "max_context": self.max_context}


def _gpt2_spec(config: dict[str, Any]) -> DecoderSpec:
    heads = int(config["n_head"])
    return DecoderSpec("gpt2", int(config["n_layer"]), heads, int(config["n_embd"]) // heads,
                       int(config["vocab_size"]), int(config.get("n_positions") or 1024))


def _rope_type(config: dict[str, Any]) -> str:
    """The RoPE variant, whichever key this transformers version wrote it under."""
    for key in ("rope_parameters", "rope_scaling"):
        params = config.get(key)
        if isinstance(params, dict):
            return str(params.get("rope_type") or params.get("type") or "default")
    return "default"


def _llama_spec(config: dict[str, Any], model_dir: Path) -> DecoderSpec:
    heads = int(config["num_attention_heads"])
    kv_heads = int(config.get("num_key_value_heads") or heads)
    if heads % kv_heads:
        raise ModelLoadError(f"model folder {model_dir}: {heads} attention heads are not a multiple of "
                             f"{kv_heads} key/value heads; the edge export cannot handle it")
    rope = _rope_type(config)
    if rope not in SUPPORTED_ROPE:
        raise ModelLoadError(f"model folder {model_dir} uses RoPE scaling {rope!r}, which the edge's ONNX export "
                             f"does not handle (supported: {', '.join(sorted(SUPPORTED_ROPE))})")
    head_dim = int(config.get("head_dim") or int(config["hidden_size"]) // heads)
    return DecoderSpec("llama", int(config["num_hidden_layers"]), kv_heads, head_dim, int(config["vocab_size"]),
                       int(config.get("max_position_embeddings") or 2048))


def decoder_spec(config: dict[str, Any], model_dir: Path) -> DecoderSpec:
    """The :class:`DecoderSpec` of a validated config.json; ModelLoadError naming ``model_dir`` if it lacks a key."""
    try:
        if config.get("model_type") == "gpt2":
            return _gpt2_spec(config)
        if config.get("model_type") == "llama":
            return _llama_spec(config, model_dir)
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        raise ModelLoadError(f"model folder {model_dir} has an incomplete config.json for the edge: {exc!r}") from exc
    raise ModelLoadError(f"model folder {model_dir} holds a {config.get('model_type')!r} model; the edge serves "
                         f"{' or '.join(EDGE_MODEL_TYPES)}")


def read_edge_config(model_dir: Path, weights: bool = True) -> tuple[dict[str, Any], DecoderSpec]:
    """Validate a GPT-2 or LLaMA folder (``weights=False``: an ONNX export folder) and describe it."""
    model_dir = Path(model_dir)
    config = read_hf_config(model_dir, EDGE_MODEL_TYPES, weights=weights)
    return config, decoder_spec(config, model_dir)
