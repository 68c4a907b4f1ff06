"""Tiny, seeded GPT-2 and LLaMA checkpoints built from configs, for tests and the demo.

Nothing here downloads: the tokenizer is a byte-level BPE trained on a corpus shipped
with the package, and weights are random (seeded). Folders are real Hugging Face
checkpoints, so every code path that loads ``--model PATH`` is exercised for real.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from tokenizers import Tokenizer as RawTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from netgpt.build_once import build_once

EOS = "<|endoftext|>"
SEED = 1234
SPEC_VERSION = 1  # bump when anything below changes what gets built


@dataclass(frozen=True)
class TinyModels:
    tokenizer_dir: Path
    gpt2_dir: Path
    llama_dir: Path


def default_cache_root() -> Path:
    base = os.environ.get("NETGPT_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "netgpt"
    )
    return Path(base)


def corpus_lines() -> list[str]:
    text = resources.files("netgpt.assets").joinpath("corpus.txt").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip()]


def train_tokenizer(vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """Byte-level BPE (GPT-2 style) trained on the shipped corpus."""
    raw = RawTokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(corpus_lines(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=raw, bos_token=EOS, eos_token=EOS, unk_token=EOS, pad_token=EOS
    )


def tiny_gpt2_config(vocab_size: int, eos_id: int) -> GPT2Config:
    return GPT2Config(
        vocab_size=vocab_size, n_positions=512, n_embd=64, n_layer=2, n_head=4,
        bos_token_id=eos_id, eos_token_id=eos_id,
    )


def tiny_llama_config(vocab_size: int, eos_id: int) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        bos_token_id=eos_id, eos_token_id=eos_id, pad_token_id=eos_id,
    )


def _spec_key() -> str:
    spec = {"version": SPEC_VERSION, "seed": SEED, "corpus": corpus_lines()}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _save_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, folder: Path) -> None:
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


def build_tiny_models(folder: Path) -> TinyModels:
    """Build tokenizer + tiny GPT-2 + tiny LLaMA into ``folder`` (overwrites)."""
    tokenizer = train_tokenizer()
    eos_id = int(tokenizer.convert_tokens_to_ids(EOS))  # type: ignore[arg-type]  # one token in, one id out
    torch.manual_seed(SEED)
    gpt2 = GPT2LMHeadModel(tiny_gpt2_config(len(tokenizer), eos_id)).eval()
    torch.manual_seed(SEED + 1)
    llama = LlamaForCausalLM(tiny_llama_config(len(tokenizer), eos_id)).eval()
    out = TinyModels(folder / "tokenizer", folder / "gpt2", folder / "llama")
    tokenizer.save_pretrained(out.tokenizer_dir)
    _save_model(gpt2, tokenizer, out.gpt2_dir)
    _save_model(llama, tokenizer, out.llama_dir)
    return out


def ensure_tiny_models(cache_root: Path | None = None) -> TinyModels:
    """Return cached tiny models, building them once (atomically) if absent."""
    final = (cache_root or default_cache_root()) / "tiny-models" / _spec_key()
    build_once(final, build_tiny_models)
    return TinyModels(final / "tokenizer", final / "gpt2", final / "llama")
