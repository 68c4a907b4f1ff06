"""Random-weight models at real sizes for the speed benches, built once per cache (seeded)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import PreTrainedModel

from netgpt.tiny_models import ensure_tiny_models


def random_model_folder(cache_root: Path, name: str, seed: int, build: Callable[[], PreTrainedModel]) -> Path:
    """``cache_root/bench/name``: ``build()``'s seeded random weights + the tiny tokenizer (the
    loaders need a tokenizer.json; the measured loops use ids, never text). Built in a staging
    folder and renamed into place, so a half-written folder is never used."""
    final = cache_root / "bench" / name
    if (final / "config.json").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=final.parent))
    try:
        torch.manual_seed(seed)
        build().eval().save_pretrained(staging, safe_serialization=True)
        for item in ensure_tiny_models(cache_root).tokenizer_dir.iterdir():
            shutil.copy(item, staging / item.name)
        try:
            staging.rename(final)
        except OSError:  # a concurrent run won the race; its folder is identical
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final
