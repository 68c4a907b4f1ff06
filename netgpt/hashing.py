"""Streaming content hashes for model artifacts (weights identity in ``ModelIdentity``)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

CHUNK_SIZE = 1 << 20  # 1 MiB: bounded memory whatever the file size


def sha256_file(path: Path) -> str:
    """Hex sha256 of one file's bytes, read in 1 MiB chunks (equals ``sha256sum PATH``)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_of_files(paths: Iterable[Path]) -> str:
    """Hex sha256 identifying the contents of ``paths``, in the order given.

    A single file gives exactly :func:`sha256_file` (so operators can check it with
    ``sha256sum``). Several files give the sha256 of their hex digests joined by
    newlines, which keeps file boundaries unambiguous. Names do not count, only bytes
    and order: callers pass a deterministic order (e.g. sorted shard names).
    """
    digests = [sha256_file(Path(p)) for p in paths]
    if not digests:
        raise ValueError("sha256_of_files needs at least one file")
    if len(digests) == 1:
        return digests[0]
    return hashlib.sha256("\n".join(digests).encode("ascii")).hexdigest()
