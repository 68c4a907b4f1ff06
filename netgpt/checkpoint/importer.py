"""``netgpt model import``: a GGUF file or a Hugging Face folder → the store's checkpoint format.

The store's format is a Hugging Face folder with safetensors weights only: ``config.json``,
``generation_config.json``, the tokenizer (``tokenizer.json`` + ``tokenizer_config.json``) and its
chat template, plus ``lineage.json`` saying where it came from (source file and sha256, the
quantisation it was dequantised from, license). A GGUF file is dequantised to float32 by
transformers (with the ``gguf`` package); a folder is checked and copied without its pickles.

Imports are cached by the source's sha256 under ``$NETGPT_CACHE_DIR/imported/``: a node that
starts on the same file again finds the converted folder and does not convert a second time.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netgpt.build_once import build_once
from netgpt.checkpoint.gguf_meta import GgufInfo, read_gguf_info
from netgpt.engine import ModelLoadError, read_hf_config
from netgpt.errors import one_line
from netgpt.hashing import sha256_file, sha256_of_files
from netgpt.tiny_models import default_cache_root

LINEAGE_FILE = "lineage.json"
FOLDER_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                "special_tokens_map.json", "chat_template.jinja")


@dataclass(frozen=True)
class ImportedCheckpoint:
    """A servable checkpoint folder and its lineage; ``converted`` is False when the cache had it."""

    folder: Path
    lineage: dict[str, str]
    converted: bool


def import_checkpoint(source: Path, cache_root: Path | None = None, license: str = "",
                      expected_sha256: str = "", extra_lineage: dict[str, str] | None = None) -> ImportedCheckpoint:
    """Import ``source`` (a ``.gguf`` file or a Hugging Face folder) into the cache; ModelLoadError naming it."""
    source = source.expanduser()
    if source.is_dir():
        read_hf_config(source, ("llama",))
        sha = sha256_of_files(sorted(source.glob("*.safetensors")))
    elif source.is_file():
        sha = sha256_file(source)
    else:
        raise ModelLoadError(f"{source} does not exist: pass a .gguf file or a Hugging Face folder")
    if expected_sha256 and sha != expected_sha256:
        raise ModelLoadError(f"{source} has sha256 {sha}, expected {expected_sha256} (a different or damaged file)")
    final = (cache_root or default_cache_root()) / "imported" / sha[:16]

    def build(staging: Path) -> None:  # only on a cache miss: reading a GGUF's metadata takes seconds
        if source.is_dir():
            lineage = {"source_format": "hf-folder", "license": "unknown"}
            _copy_folder(source, staging)
        else:
            info = read_gguf_info(source)
            lineage = info.lineage()
            _convert_gguf(info, staging)
        lineage |= {"source_file": source.name, "source_sha256": sha, **(extra_lineage or {})}
        lineage |= {"license": license} if license else {}
        (staging / LINEAGE_FILE).write_text(json.dumps(lineage, indent=2, sort_keys=True) + "\n")

    converted = build_once(final, build)
    return ImportedCheckpoint(final, read_lineage(final), converted)


def read_lineage(folder: Path) -> dict[str, str]:
    """The lineage an import recorded ({} for a folder that was not imported)."""
    path = folder / LINEAGE_FILE
    return dict(json.loads(path.read_text())) if path.is_file() else {}


def _copy_folder(source: Path, out: Path) -> None:
    for path in [*sorted(source.glob("*.safetensors")), *(source / name for name in FOLDER_FILES)]:
        if path.is_file():
            shutil.copy2(path, out / path.name)


def _convert_gguf(info: GgufInfo, out: Path) -> None:
    """Dequantise ``info.path`` with transformers and save it as a safetensors folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = info.path.parent, info.path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model: Any = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except Exception as exc:  # transformers raises many types for a file it cannot map
        raise ModelLoadError(f"transformers cannot read {info.path}: {one_line(exc)}") from exc
    # the dequantised weights are plain float tensors: drop the GGUF quantizer so the model saves as safetensors
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
