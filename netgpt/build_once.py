"""A folder built once into a cache, atomically: readers never see a half-built one."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def build_once(final: Path, build: Callable[[Path], object]) -> bool:
    """Build ``final`` with ``build(staging)`` unless it exists; True when this call built it.

    ``build`` fills a staging folder beside ``final``, which is then renamed into place, so a
    crash leaves no partial ``final`` and two processes racing both end with a whole one.
    """
    if final.exists():
        return False
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=final.parent))
    try:
        build(staging)
        try:
            staging.rename(final)
        except OSError:  # another process won the race; theirs is built from the same input
            return False
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return True
