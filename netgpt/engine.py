"""What a node needs from a loaded model, whatever runs it (ONNX Runtime or torch)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from netgpt.errors import StartupError
from netgpt.generation import DecodeSession, Tokenizer


class ModelLoadError(StartupError):
    """A model folder or artifact cannot be used; the message is one line for the operator."""


@dataclass(frozen=True)
class ModelIdentity:
    name: str
    version: str
    sha256: str  # content hash of the weights actually served


class LanguageModel(Protocol):
    identity: ModelIdentity
    tokenizer: Tokenizer
    max_context: int  # prompt + generated tokens must fit

    def new_session(self) -> DecodeSession:
        """A fresh single-sequence decoder; safe to use from a worker thread."""


def read_hf_config(model_dir: Path, expected_model_types: tuple[str, ...], weights: bool = True) -> dict[str, Any]:
    """Validate a local Hugging Face folder and return its config.json, or raise ModelLoadError.

    ``weights=False`` for folders that carry the weights in another form (an ONNX export).
    """
    if not model_dir.is_dir():
        raise ModelLoadError(f"model folder {model_dir} does not exist or is not a directory")
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise ModelLoadError(f"model folder {model_dir} has no config.json")
    try:
        config: dict[str, Any] = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{config_path} is not valid JSON: {exc}") from exc
    model_type = config.get("model_type")
    if model_type not in expected_model_types:
        raise ModelLoadError(
            f"model folder {model_dir} holds a {model_type!r} model; expected {' or '.join(expected_model_types)}"
        )
    if weights and not any(model_dir.glob("*.safetensors")):
        raise ModelLoadError(f"model folder {model_dir} has no *.safetensors weights (pickled weights are refused)")
    if not (model_dir / "tokenizer.json").is_file():
        raise ModelLoadError(f"model folder {model_dir} has no tokenizer.json")
    return config
