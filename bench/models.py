"""Random-weight models at real sizes for the speed benches, built once per cache (seeded)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import PreTrainedModel

from netgpt.build_once import build_once
from netgpt.tiny_models import ensure_tiny_models


def random_model_folder(cache_root: Path, name: str, seed: int, build: Callable[[], PreTrainedModel]) -> Path:
    """``cache_root/bench/name``: ``build()``'s seeded random weights + the tiny tokenizer (the
    loaders need a tokenizer.json; the measured loops use ids, never text). Built in a staging
    folder and renamed into place, so a half-written folder is never used."""
    final = cache_root / "bench" / name

    def fill(staging: Path) -> None:
        torch.manual_seed(seed)
        build().eval().save_pretrained(staging, safe_serialization=True)
        for item in ensure_tiny_models(cache_root).tokenizer_dir.iterdir():
            shutil.copy(item, staging / item.name)

    build_once(final, fill)
    return final
