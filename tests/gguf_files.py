"""GGUF files for the import tests, written the way llama.cpp's converter writes them.

A tiny Hugging Face LLaMA folder (``netgpt.tiny_models``) becomes an F32 GGUF with its
tokenizer (tokens, merges, special ids, an optional chat template), q/k weights permuted as
llama.cpp stores them; importing it back must give the same logits. Knobs make the bad files
an operator meets: another architecture, no tokenizer; truncation is done by the test.
"""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
from safetensors.numpy import load_file

CHAT_TEMPLATE = ("{% for message in messages %}<|user|>{{ message['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def _permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's q/k layout (interleaved rotary halves), which transformers' GGUF loader undoes."""
    return weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(
        weights.shape)


def write_gguf(hf_dir: Path, out: Path, architecture: str = "llama", tokenizer: bool = True,
               chat_template: str = "") -> Path:
    config = json.loads((hf_dir / "config.json").read_text())
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    writer = gguf.GGUFWriter(out, architecture)
    writer.add_name("tiny-llama")
    writer.add_license("apache-2.0")
    writer.add_file_type(int(gguf.LlamaFileType.ALL_F32))
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_freq_base(float(config.get("rope_theta") or config["rope_parameters"]["rope_theta"]))
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_rope_dimension_count(config["hidden_size"] // heads)
    if tokenizer:
        _add_tokenizer(writer, hf_dir, chat_template)
    names = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
             "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down",
             "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
    for key, value in sorted(load_file(str(hf_dir / "model.safetensors")).items()):
        value = value.astype(np.float32)
        if key == "model.embed_tokens.weight":
            writer.add_tensor("token_embd.weight", value)
        elif key == "model.norm.weight":
            writer.add_tensor("output_norm.weight", value)
        elif key == "lm_head.weight":
            writer.add_tensor("output.weight", value)
        else:  # model.layers.N.(self_attn|mlp).NAME.weight or model.layers.N.NAME.weight
            parts = key.split(".")
            layer, name = parts[2], parts[-2]
            if name == "q_proj":
                value = _permute(value, heads)
            elif name == "k_proj":
                value = _permute(value, kv_heads)
            writer.add_tensor(f"blk.{layer}.{names[name]}.weight", value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def _add_tokenizer(writer: gguf.GGUFWriter, hf_dir: Path, chat_template: str) -> None:
    spec = json.loads((hf_dir / "tokenizer.json").read_text())
    vocab: dict[str, int] = spec["model"]["vocab"]
    for added in spec.get("added_tokens", []):
        vocab.setdefault(added["content"], added["id"])
    tokens = [token for token, _ in sorted(vocab.items(), key=lambda item: item[1])]
    special = {added["content"] for added in spec.get("added_tokens", [])}
    merges = [merge if isinstance(merge, str) else " ".join(merge) for merge in spec["model"]["merges"]]
    eos = json.loads((hf_dir / "config.json").read_text())["eos_token_id"]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([int(gguf.TokenType.CONTROL if token in special else gguf.TokenType.NORMAL)
                            for token in tokens])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(eos)
    writer.add_eos_token_id(eos)
    writer.add_pad_token_id(eos)
    if chat_template:
        writer.add_chat_template(chat_template)
