"""Shared fixtures: an isolated model cache, tiny models, and loopback servers on ephemeral ports."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from netgpt.logs import configure_logging


@pytest.fixture(scope="session", autouse=True)
def netgpt_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every test run builds its own tiny models and ONNX exports unless CI points at a cache."""
    path = Path(os.environ.get("NETGPT_CACHE_DIR") or tmp_path_factory.mktemp("netgpt-cache"))
    os.environ["NETGPT_CACHE_DIR"] = str(path)
    configure_logging(json=True, level=os.environ.get("NETGPT_TEST_LOG", "warning"))
    return path


@pytest.fixture(scope="session")
def tiny(netgpt_cache: Path):
    from netgpt.tiny_models import ensure_tiny_models

    return ensure_tiny_models()
