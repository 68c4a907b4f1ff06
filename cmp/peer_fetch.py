"""Fetch one blob from several sources at once, piece by piece (the client side of BlobService).

Each usable source runs a worker that takes the next missing piece, streams it with
``FetchBlob(sha256, offset, length)``, checks it against the plan's piece sha256 and writes
it at its offset in ``dest.part``. A source that sends bad bytes is dropped for the transfer
(DATA_LOSS) and its piece goes back to the queue for another source; a source that is
unreachable is retried with backoff and dropped after ``source_attempts`` failures in a row;
one that does not hold the blob yet, or is over its upload budget, is asked again later. The
origin (the core) is used at once by a seed, otherwise only once no peer is left or after
``peer_wait_s``. When every piece is in, the whole file's sha256 is checked, then it is
fsynced and renamed to ``dest``: ``dest`` never holds unverified bytes. A ``dest.part`` left
by an earlier attempt is resumed: its pieces that already match are kept.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import structlog

from cmp.blobio import fsync_dir
from cmp.distribution import FetchPlan, Source, SourceTally
from cmp.transfer_client import Progress
from netgpt.alloc import tune_for_transfers
from netgpt.errors import DataLoss, NetGptError, Unavailable
from netgpt.hashing import CHUNK_SIZE
from netgpt.status import status_code
from netgpt.v1 import blob_pb2
from netgpt.v1 import blob_pb2_grpc as blob_grpc

log = structlog.get_logger(__name__)

StubFor = Callable[[Source], blob_grpc.BlobServiceStub]
NOT_YET = {grpc.StatusCode.NOT_FOUND, grpc.StatusCode.RESOURCE_EXHAUSTED}  # ask again later
TRANSIENT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED,
             grpc.StatusCode.ABORTED, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}


@dataclass(frozen=True)
class PeerFetchPolicy:
    parallel: int = 4  # pieces in flight at once, over all sources
    source_attempts: int = 3  # failures in a row before a peer is dropped
    origin_attempts: int = 8  # ... and the core (it may be restarting)
    first_backoff_s: float = 0.2
    max_backoff_s: float = 5.0
    poll_s: float = 0.1  # first wait before asking a peer that does not hold the blob yet
    peer_wait_s: float = 120.0  # a non-seed uses the origin after waiting this long for peers
    piece_timeout_s: float = 300.0


DEFAULT_PEER_POLICY = PeerFetchPolicy()


class PeerFetch:
    def __init__(self, plan: FetchPlan, dest: Path, stub_for: StubFor, policy: PeerFetchPolicy = DEFAULT_PEER_POLICY,
                 progress: Progress | None = None, node_id: str = "") -> None:
        self.plan = plan
        self.node_id = node_id  # who asks: a source serves a few nodes at a time
        self.dest = Path(dest)
        self.part = self.dest.with_name(self.dest.name + ".part")
        self.tallies = [SourceTally(s) for s in plan.sources]
        self._stub_for = stub_for
        self._policy = policy
        self._progress = progress
        self._todo: deque[int] = deque()
        self._in_flight = 0
        self._done_bytes = 0
        self._slots = asyncio.Semaphore(policy.parallel)
        self._started = time.monotonic()
        self._log = log.bind(sha256=plan.sha256[:16])

    async def run(self) -> Path:
        """Fetch, verify the whole, promote to ``dest``; DataLoss/Unavailable when no source could finish."""
        pieces = self.plan.pieces
        tune_for_transfers()
        kept = await asyncio.to_thread(self._open_part)
        self._todo.extend(i for i in range(len(pieces)) if i not in kept)
        self._done_bytes = sum(pieces.span(i)[1] for i in kept)
        self._report()
        self._log.info("peer_fetch.started", pieces=len(pieces), resumed_pieces=len(kept), seed=self.plan.seed,
                       sources=[t.source.label for t in self.tallies])
        workers = [asyncio.create_task(self._worker(t)) for t in self.tallies]
        try:
            await asyncio.gather(*workers)
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        if self._todo:
            raise self._failure()
        await asyncio.to_thread(self._verify_and_promote)
        self._log.info("peer_fetch.done", sources={t.source.label: t.bytes for t in self.tallies if t.bytes})
        return self.dest

    # --- workers ---------------------------------------------------------------------------

    async def _worker(self, tally: SourceTally) -> None:
        failures, wait = 0, self._policy.poll_s
        limit = self._policy.origin_attempts if tally.source.origin else self._policy.source_attempts
        while self._todo or self._in_flight:
            if not self._todo or not self._may_use(tally.source):
                await asyncio.sleep(self._policy.poll_s)
                continue
            async with self._slots:
                if not self._todo:
                    continue
                index = self._todo.popleft()
                self._in_flight += 1
                try:
                    await self._fetch_piece(tally, index)
                    failures, wait = 0, self._policy.poll_s
                    continue
                except (grpc.aio.AioRpcError, NetGptError) as exc:
                    self._todo.appendleft(index)
                    code = status_code(exc)
                    detail = _detail(exc)
                finally:
                    self._in_flight -= 1
            if code in NOT_YET and time.monotonic() - self._started < 2 * self._policy.peer_wait_s:
                await asyncio.sleep(wait)
                wait = min(wait * 2, 0.5)
                continue
            failures += 1
            if code not in TRANSIENT or failures >= limit:
                self._drop(tally, code, detail)
                return
            backoff = min(self._policy.first_backoff_s * 2 ** (failures - 1), self._policy.max_backoff_s)
            self._log.warning("peer_fetch.retry", source=tally.source.label, code=code.name, error=detail,
                              attempt=failures, retry_in_s=backoff)
            await asyncio.sleep(backoff)

    def _may_use(self, source: Source) -> bool:
        if not source.origin or self.plan.seed:
            return True
        peers_left = any(not t.dropped for t in self.tallies if not t.source.origin)
        return not peers_left or time.monotonic() - self._started >= self._policy.peer_wait_s

    async def _fetch_piece(self, tally: SourceTally, index: int) -> None:
        offset, length = self.plan.pieces.span(index)
        request = blob_pb2.FetchBlobRequest(sha256=self.plan.sha256, offset=offset, length=length,
                                            node_id=self.node_id)
        call = self._stub_for(tally.source).FetchBlob(request, timeout=self._policy.piece_timeout_s)
        data, trailer = bytearray(), None
        try:
            async for response in call:
                if response.HasField("trailer"):
                    trailer = response.trailer
                    break
                if response.chunk.offset != offset + len(data):
                    raise DataLoss(f"{tally.source.label} sent a chunk at offset {response.chunk.offset}, "
                                   f"expected {offset + len(data)}")
                data += response.chunk.data
        finally:
            call.cancel()
        if trailer is None:
            raise Unavailable(f"{tally.source.label} ended piece {index} without its trailer")
        if (trailer.sha256, trailer.size_bytes) != (self.plan.sha256, self.plan.pieces.size_bytes):
            raise DataLoss(f"{tally.source.label} describes the blob as {trailer.size_bytes} bytes with sha256 "
                           f"{trailer.sha256[:16]}..., the plan says {self.plan.pieces.size_bytes} / "
                           f"{self.plan.sha256[:16]}...")
        await asyncio.to_thread(self._store_piece, index, offset, data, tally.source.label)
        tally.bytes += length
        self._done_bytes += length
        self._report()

    def _store_piece(self, index: int, offset: int, data: bytearray, source: str) -> None:
        self.plan.pieces.check(index, data, source)
        fd = os.open(self.part, os.O_WRONLY)
        try:
            view = memoryview(data)
            while view:
                view = view[os.pwrite(fd, view, offset + len(data) - len(view)):]
        finally:
            os.close(fd)

    def _drop(self, tally: SourceTally, code: grpc.StatusCode, detail: str) -> None:
        tally.dropped, tally.error = True, f"{code.name}: {detail}"
        self._log.warning("peer_fetch.source_dropped", source=tally.source.label, code=code.name, error=detail)

    def _failure(self) -> NetGptError:
        bad = [t for t in self.tallies if t.error.startswith("DATA_LOSS")]
        errors = "; ".join(f"{t.source.label}: {t.error}" for t in self.tallies if t.error)
        message = f"no source could serve blob {self.plan.sha256[:16]}... ({len(self._todo)} pieces missing): {errors}"
        return DataLoss(message) if bad and len(bad) == sum(t.dropped for t in self.tallies) else Unavailable(message)

    def _report(self) -> None:
        if self._progress is not None:
            self._progress(self._done_bytes, self.plan.pieces.size_bytes)

    # --- the file ---------------------------------------------------------------------------

    def _open_part(self) -> set[int]:
        """Create ``dest.part`` at full size, or keep the pieces of an earlier attempt that match."""
        pieces, kept = self.plan.pieces, set()
        self.part.parent.mkdir(parents=True, exist_ok=True)
        if self.part.exists() and self.part.stat().st_size == pieces.size_bytes:
            with open(self.part, "rb") as handle:
                for index in range(len(pieces)):
                    offset, length = pieces.span(index)
                    handle.seek(offset)
                    if hashlib.sha256(handle.read(length)).hexdigest() == pieces.sha256[index]:
                        kept.add(index)
        else:
            with open(self.part, "wb") as handle:
                handle.truncate(pieces.size_bytes)
        return kept

    def _verify_and_promote(self) -> None:
        digest = hashlib.sha256()
        with open(self.part, "rb") as handle:
            while block := handle.read(8 * CHUNK_SIZE):
                digest.update(block)
            os.fsync(handle.fileno())
        if digest.hexdigest() != self.plan.sha256:
            self.part.unlink(missing_ok=True)
            raise DataLoss(f"every piece matched but the whole hashes to {digest.hexdigest()}, not "
                           f"{self.plan.sha256}: the plan's piece hashes are wrong; partial file deleted")
        os.replace(self.part, self.dest)
        fsync_dir(self.dest.parent)


def _detail(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return str(exc.details() or exc.code().name)
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
