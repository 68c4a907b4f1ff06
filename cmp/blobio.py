"""File primitives for artifacts: hash-while-writing, offset reads, crash-safe replace.

Shared by the store (server side) and the fetch client, so both verify bytes the same way:
the sha256 is computed as the bytes arrive, never in a second pass over the file.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from netgpt.errors import DataLoss
from netgpt.hashing import CHUNK_SIZE

MAX_CHUNK_BYTES = CHUNK_SIZE  # 1 MiB: the protocol's largest chunk
FLUSH_EVERY = 32 * CHUNK_SIZE  # start disk writeback this often, so the final fsync has little left


class HashingWriter:
    """Appends contiguous chunks to a file and hashes them on the way.

    ``resume=True`` continues an existing partial file: its bytes are hashed first so the
    final digest covers the whole file. ``limit`` is the expected total size: a chunk that
    would go past it is DATA_LOSS (the sender's size claim or its data is wrong).

    Every ``flush_every`` bytes an ``fdatasync`` runs on a helper thread while writing goes
    on: the disk works during the transfer instead of in one long fsync at the end (which
    halved the throughput of bench.distribution). Its errors are re-raised here, because
    Linux reports a writeback error to only one fsync per open file.
    """

    def __init__(self, path: Path, limit: int | None = None, resume: bool = False,
                 flush_every: int = FLUSH_EVERY) -> None:
        self.path = Path(path)
        self.limit = limit
        self.flush_every = flush_every
        self._digest = hashlib.sha256()
        self._file = open(self.path, "a+b" if resume else "wb")
        if resume:
            self._file.seek(0)
            while block := self._file.read(CHUNK_SIZE):
                self._digest.update(block)
        self.size = self._file.tell()
        self._flushed = self.size
        self._flusher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netgpt-flush")
        self._flush: Future[None] | None = None

    def write(self, offset: int, data: bytes | memoryview) -> None:
        if offset != self.size:
            raise DataLoss(f"chunk at offset {offset}, expected {self.size}: a chunk was lost, repeated or reordered")
        if self.limit is not None and offset + len(data) > self.limit:
            raise DataLoss(f"received {offset + len(data)} bytes, more than the declared size of {self.limit}")
        self._digest.update(data)
        self._file.write(data)
        self.size += len(data)
        if self.size - self._flushed >= self.flush_every and (self._flush is None or self._flush.done()):
            if self._flush is not None:
                self._flush.result()  # raises the OSError of a failed writeback
            self._file.flush()
            self._flushed = self.size
            self._flush = self._flusher.submit(os.fdatasync, self._file.fileno())

    def hexdigest(self) -> str:
        return self._digest.hexdigest()

    def close(self, fsync: bool = False) -> None:
        if self._file.closed:
            return
        self._flusher.shutdown()
        try:
            self._file.flush()
            if fsync:
                if self._flush is not None:
                    self._flush.result()
                os.fsync(self._file.fileno())
        finally:
            self._file.close()


def iter_chunks(path: Path, offset: int = 0, end: int | None = None,
                chunk_size: int = MAX_CHUNK_BYTES) -> Iterator[tuple[int, bytes]]:
    """``(offset, data)`` slices of ``path`` from ``offset`` to ``end`` (default: end of file).

    A file shorter than ``end`` is DATA_LOSS: the stored blob was truncated behind our back.
    """
    with open(path, "rb") as handle:
        handle.seek(offset)
        while end is None or offset < end:
            data = handle.read(chunk_size if end is None else min(chunk_size, end - offset))
            if not data:
                if end is not None:
                    raise DataLoss(f"{path.name} ends at byte {offset}, expected {end}: the stored file is damaged")
                return
            yield offset, data
            offset += len(data)


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable (a crash must not resurrect or lose it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``path`` so readers see the old or the new content, never a torn file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
