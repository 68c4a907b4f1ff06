"""A node's shelf of verified blobs, named by sha256, that it serves to peers (``BlobService``).

A file gets here only by :meth:`BlobCache.admit` after its whole sha256 was checked, through
an atomic rename: partial downloads live elsewhere (``artifacts/*.part``), so a peer can never
be served a half-written or unverified blob. gRPC-free.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import structlog

from cmp.blobio import fsync_dir
from cmp.manifest import SHA256_RE
from netgpt.errors import NotFound

log = structlog.get_logger(__name__)


class BlobCache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def blob(self, sha256: str) -> tuple[Path, int]:
        """Path and size of a verified blob held here; NOT_FOUND otherwise (not fetched, or not yet)."""
        path = self.root / sha256
        if not SHA256_RE.fullmatch(sha256) or not path.is_file():
            raise NotFound(f"this node holds no verified blob with sha256 {sha256[:64]}")
        return path, path.stat().st_size

    def held(self) -> list[str]:
        """sha256 of every blob held, sorted (what the heartbeat advertises)."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if SHA256_RE.fullmatch(p.name))

    def admit(self, verified: Path, sha256: str) -> Path:
        """Move a file whose whole sha256 was checked onto the shelf (read-only, atomic, durable)."""
        self.root.mkdir(parents=True, exist_ok=True)
        dest = self.root / sha256
        os.chmod(verified, 0o444)
        os.replace(verified, dest)
        fsync_dir(self.root)
        log.info("blobs.admitted", sha256=sha256, size_bytes=dest.stat().st_size)
        return dest

    def keep(self, wanted: Iterable[str]) -> None:
        """Delete every blob not in ``wanted`` (peers reading one keep their open handle)."""
        keep = set(wanted)
        for sha256 in self.held():
            if sha256 not in keep:
                (self.root / sha256).unlink(missing_ok=True)
                log.info("blobs.dropped", sha256=sha256)
