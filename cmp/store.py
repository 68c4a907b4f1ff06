"""The core's model store: content-addressed blobs plus one JSON manifest per version, on disk.

Layout under ``root`` (created on first publish, so a core that never stores a model
leaves no trace)::

    blobs/sha256/<hex>              the artifact bytes, read-only, stored once per content
    manifests/<name>/<version>.json one per registered version
    staging/<process>/<random>.part uploads in flight; promoted only once the sha256 matches

Every promotion is ``os.replace`` after ``fsync`` (file, then directory), so a crash
leaves either the old state or the new one, never a half-written blob or manifest; a store
that opens removes the staging folders no process has written for :data:`STALE_STAGING_S`.

Core replicas share one directory (a shared volume that renames atomically: NFSv4, CephFS, a
Kubernetes ReadWriteMany volume). That needs no locks between them: blobs are content-addressed
and immutable, each manifest is written once by rename, and a version one replica published is
found by another on its first miss (:meth:`ModelStore.describe` and :meth:`ModelStore.blob` look
on disk before answering NOT_FOUND; listings always read the directory). The alternative, each
replica fetching what it lacks from another over the blob protocol, would keep a copy per replica
and still leave the listing of versions to be synchronised.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import structlog

from cmp.blobio import MAX_CHUNK_BYTES, HashingWriter, atomic_write, fsync_dir, iter_chunks
from cmp.manifest import Manifest, check_name, validate
from cmp.pieces import Pieces, hash_pieces
from netgpt.errors import (
    AlreadyExists,
    DataLoss,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OutOfRange,
    ResourceExhausted,
)

log = structlog.get_logger(__name__)

FREE_SPACE_MARGIN = 64 << 20  # keep some disk for manifests and logs after an upload
STALE_STAGING_S = 24 * 3600.0  # a staging folder untouched this long belongs to no live upload


def default_store_dir() -> Path:
    """Published models are data, not cache (``make clean-cache`` must not delete them)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(base) / "netgpt" / "store"


class ModelStore:
    """Durable registry of immutable model versions; thread-safe (uploads finish on worker threads)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blobs = self.root / "blobs" / "sha256"
        self.manifests = self.root / "manifests"
        # this process's own (replicas share the root): host and pid say whether its owner still lives
        self.staging = self.root / "staging" / f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._lock = threading.Lock()
        _remove_stale_staging(self.root / "staging")  # leftovers of uploads a crash interrupted
        self._versions = self._load()
        self._pieces: dict[str, Pieces] = {}
        log.info("store.opened", root=str(self.root), versions=len(self._versions))

    def blob_path(self, sha256: str) -> Path:
        return self.blobs / sha256

    def versions(self, name: str = "") -> list[Manifest]:
        """Registered versions (of ``name`` if given), by name then registration time (read from disk:
        another core replica may have published some)."""
        if name:
            check_name("model name", name)
        self._rescan()
        with self._lock:
            found = [m for m in self._versions.values() if not name or m.name == name]
        return sorted(found, key=lambda m: (m.name, m.created_at or datetime.min.replace(tzinfo=UTC), m.version))

    def describe(self, name: str, version: str) -> Manifest:
        key = (check_name("model name", name), check_name("model version", version))
        with self._lock:
            manifest = self._versions.get(key)
        if manifest is None and self._rescan():
            with self._lock:
                manifest = self._versions.get(key)
        if manifest is None:
            raise NotFound(f"model {name} version {version} is not in the store")
        return manifest

    def read(self, name: str, version: str, offset: int = 0,
             sha256: str = "") -> tuple[Manifest, Iterator[tuple[int, bytes]]]:
        """The manifest and ``(offset, data)`` chunks of at most 1 MiB from ``offset`` to the end."""
        manifest = self.describe(name, version)
        if sha256 and sha256 != manifest.sha256:
            raise FailedPrecondition(f"model {name} version {version} has sha256 {manifest.sha256}, "
                                     f"not the requested {sha256}")
        if offset > manifest.size_bytes:
            raise OutOfRange(f"offset {offset} is beyond the end of {name} {version} ({manifest.size_bytes} bytes)")
        return manifest, iter_chunks(self.blob_path(manifest.sha256), offset, manifest.size_bytes)

    def pieces(self, sha256: str) -> Pieces:
        """Piece hashes of a stored blob, computed on first use (one read of the blob, on the
        caller's thread: a deploy, not the publish, pays for it) and kept in memory."""
        with self._lock:
            known = self._pieces.get(sha256)
            manifest = next((m for m in self._versions.values() if m.sha256 == sha256), None)
        if known is not None:
            return known
        if manifest is None:
            raise NotFound(f"no stored version has sha256 {sha256}")
        pieces = hash_pieces(self.blob_path(sha256), manifest.size_bytes)
        with self._lock:
            return self._pieces.setdefault(sha256, pieces)

    def blob(self, sha256: str) -> tuple[Path, int]:
        """A stored (hence verified) blob's path and size; NOT_FOUND when no version has it."""
        manifest = self._with_sha256(sha256)
        if manifest is None and self._rescan():
            manifest = self._with_sha256(sha256)
        if manifest is None:
            raise NotFound(f"the store holds no blob with sha256 {sha256}")
        return self.blob_path(sha256), manifest.size_bytes

    def begin_upload(self, manifest: Manifest) -> Upload:
        """Validate the claim and open a staging file; the caller writes chunks, then commits."""
        validate(manifest)
        with self._lock:
            existing = self._versions.get((manifest.name, manifest.version))
        if existing is not None and not existing.same_content(manifest):
            raise _conflict(existing)
        self.staging.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.staging).free
        if manifest.size_bytes + FREE_SPACE_MARGIN > free:
            raise ResourceExhausted(f"model store has {free >> 20} MiB free, the upload needs "
                                    f"{manifest.size_bytes >> 20} MiB")
        return Upload(self, manifest, self.staging / f"{uuid.uuid4().hex}.part")

    def _register(self, manifest: Manifest, staged: Path) -> tuple[Manifest, bool]:
        """Promote a verified staging file and write the manifest; returns (manifest, deduplicated)."""
        key = (manifest.name, manifest.version)
        with self._lock:
            existing = self._versions.get(key)
            if existing is not None:  # a concurrent or repeated publish got there first
                staged.unlink(missing_ok=True)
                if not existing.same_content(manifest):
                    raise _conflict(existing)
                return existing, True
            blob = self.blob_path(manifest.sha256)
            deduplicated = blob.exists()
            if deduplicated:
                staged.unlink()
            else:
                blob.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(staged, 0o444)
                os.replace(staged, blob)
                fsync_dir(blob.parent)
            registered = replace(manifest, created_at=datetime.now(UTC))
            atomic_write(self._manifest_path(*key), json.dumps(registered.to_json(), indent=1).encode())
            self._versions[key] = registered
        log.info("store.registered", model=manifest.name, version=manifest.version, sha256=manifest.sha256,
                 size_bytes=manifest.size_bytes, deduplicated=deduplicated)
        return registered, deduplicated

    def _manifest_path(self, name: str, version: str) -> Path:
        return self.manifests / name / f"{version}.json"

    def _with_sha256(self, sha256: str) -> Manifest | None:
        with self._lock:
            return next((m for m in self._versions.values() if m.sha256 == sha256), None)

    def _rescan(self) -> bool:
        """Take in the versions another replica registered in this directory; whether any were new."""
        with self._lock:
            known = set(self._versions)
        new = self._load(skip=known)
        with self._lock:
            self._versions.update(new)
        return bool(new)

    def _load(self, skip: set[tuple[str, str]] | None = None) -> dict[tuple[str, str], Manifest]:
        """The manifests on disk (but those of ``skip``, by their file names), checked against their blobs."""
        found: dict[tuple[str, str], Manifest] = {}
        for path in sorted(self.manifests.glob("*/*.json")):
            if skip and (path.parent.name, path.stem) in skip:
                continue
            try:
                manifest = validate(Manifest.from_json(json.loads(path.read_text(encoding="utf-8"))))
                blob_size = self.blob_path(manifest.sha256).stat().st_size
            except (OSError, ValueError, KeyError, TypeError, InvalidArgument) as exc:
                log.warning("store.manifest_skipped", path=str(path), reason=str(exc))
                continue
            if blob_size != manifest.size_bytes or path != self._manifest_path(manifest.name, manifest.version):
                log.warning("store.manifest_skipped", path=str(path), reason="blob size or file name mismatch")
                continue
            found[(manifest.name, manifest.version)] = manifest
        return found


def _remove_stale_staging(staging: Path) -> None:
    """Remove what interrupted uploads left: the folders of processes of this host that are gone, files of
    the old one-folder layout, and other hosts' folders not written for :data:`STALE_STAGING_S`."""
    if not staging.is_dir():
        return
    cutoff = time.time() - STALE_STAGING_S
    for entry in staging.iterdir():
        try:
            if entry.is_dir() and not _owner_gone(entry.name) and entry.stat().st_mtime >= cutoff:
                continue
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        except OSError:  # gone already: another replica cleaned it
            continue


def _owner_gone(folder: str) -> bool:
    """Whether the process that named a staging folder ``<host>-<pid>-<random>`` is known to be gone."""
    parts = folder.rsplit("-", 2)
    if len(parts) != 3 or not parts[1].isdigit() or parts[0] != socket.gethostname():
        return False  # another host's: the age rule decides
    pid = int(parts[1])
    if pid == os.getpid():
        return False  # this process's (an earlier store of it may still be uploading)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


class Upload:
    """One publish in flight: contiguous chunks into a staging file, hashed as they arrive.

    Use as a context manager: leaving it without :meth:`commit` deletes the staging file.
    """

    def __init__(self, store: ModelStore, manifest: Manifest, path: Path) -> None:
        self.manifest = manifest
        self._store = store
        self._writer = HashingWriter(path, limit=manifest.size_bytes)

    def write(self, offset: int, data: bytes | memoryview) -> None:
        if len(data) > MAX_CHUNK_BYTES:
            raise InvalidArgument(f"chunk of {len(data)} bytes; chunks are at most {MAX_CHUNK_BYTES} bytes (1 MiB)")
        self._writer.write(offset, data)

    def commit(self) -> tuple[Manifest, bool]:
        """Register the version if every byte arrived and the sha256 matches; DATA_LOSS otherwise."""
        m = self.manifest
        if self._writer.size != m.size_bytes:
            raise DataLoss(f"upload of {m.name} {m.version} ended after {self._writer.size} of {m.size_bytes} "
                           "bytes; nothing registered")
        digest = self._writer.hexdigest()
        if digest != m.sha256:
            raise DataLoss(f"sha256 mismatch for {m.name} {m.version}: manifest says {m.sha256}, the bytes "
                           f"received hash to {digest}; nothing registered")
        self._writer.close(fsync=True)
        return self._store._register(m, self._writer.path)

    def abort(self) -> None:
        self._writer.close()
        self._writer.path.unlink(missing_ok=True)

    def __enter__(self) -> Upload:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.abort()  # after a commit the staging file is gone already


def _conflict(existing: Manifest) -> AlreadyExists:
    return AlreadyExists(f"model {existing.name} version {existing.version} already exists with sha256 "
                         f"{existing.sha256}; versions are immutable, publish a new version")
