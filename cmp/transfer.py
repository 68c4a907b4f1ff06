"""Chunked artifact streaming over the compute plane: the server side of PublishModel/FetchModel
and the client helpers (``publish_file``, ``fetch_to_file``) that nodes use to deploy.

Speed comes from overlap, not from bigger messages: sha256 and file I/O run on a worker
thread (both release the GIL) a few chunks behind or ahead of the network, disk writeback
starts during the transfer (``HashingWriter``), and each 1 MiB chunk is copied into its
message once (``chunk_message``). The event loop stays free for the core's other RPCs.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import grpc
import structlog

from cmp.blobio import HashingWriter, fsync_dir, iter_chunks
from cmp.convert import manifest_from_proto, manifest_to_proto
from cmp.store import ModelStore
from netgpt.errors import DataLoss, InvalidArgument
from netgpt.hashing import sha256_file
from netgpt.v1 import compute_plane_pb2 as cmp_pb2
from netgpt.v1 import compute_plane_pb2_grpc as cmp_grpc

log = structlog.get_logger(__name__)

T = TypeVar("T")
M = TypeVar("M", cmp_pb2.PublishModelRequest, cmp_pb2.FetchModelResponse)
Progress = Callable[[int, int], None]  # (bytes done, total bytes)
DEFAULT_TRANSFER_TIMEOUT_S = 3600.0  # a whole multi-GB checkpoint must fit in one call's deadline
_END = object()


class BackgroundWriter:
    """Runs ``write(offset, data)`` in order on one worker thread, at most ``depth`` chunks behind.

    Errors surface on a later :meth:`put` or on leaving the block. On an error exit the
    chunks already queued are still written (a partial download keeps all it received, for
    resuming) and no write is running when the block ends, so the caller may delete the file.
    """

    def __init__(self, write: Callable[[int, bytes], None], depth: int = 4) -> None:
        self._write = write
        self._depth = depth
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netgpt-write")
        self._pending: deque[asyncio.Future[None]] = deque()

    async def put(self, offset: int, data: bytes) -> None:
        while len(self._pending) >= self._depth:
            await self._pending.popleft()
        loop = asyncio.get_running_loop()
        self._pending.append(loop.run_in_executor(self._executor, self._write, offset, data))

    async def __aenter__(self) -> BackgroundWriter:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        try:
            while exc_type is None and self._pending:
                await self._pending.popleft()
        finally:
            for future in self._pending:  # their errors were superseded by the one leaving the block
                future.add_done_callback(_retrieve)
            self._executor.shutdown(wait=True)  # at most `depth` chunk writes


def chunk_message(cls: type[M], offset: int, data: bytes) -> M:
    """``cls(chunk=ModelChunk(...))`` without building the chunk twice: passing a message to a
    constructor copies it, 30x slower than the 1 MiB assignment here (measured, upb protobuf)."""
    message = cls()
    message.chunk.offset = offset
    message.chunk.data = data
    return message


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


async def read_ahead(items: Iterator[T], depth: int = 2) -> AsyncIterator[T]:
    """Iterate a blocking iterator (file reads) on a worker thread, ``depth`` items ahead."""
    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netgpt-read")
    pending = deque(loop.run_in_executor(executor, next, items, _END) for _ in range(depth))
    try:
        while (item := await pending.popleft()) is not _END:
            pending.append(loop.run_in_executor(executor, next, items, _END))
            yield item
    finally:
        for future in pending:
            future.cancel()
        executor.shutdown(wait=True, cancel_futures=True)
        close = getattr(items, "close", None)
        if close is not None:
            close()


# --- server side -------------------------------------------------------------------------


async def receive_publish(store: ModelStore,
                          requests: AsyncIterator[cmp_pb2.PublishModelRequest]) -> cmp_pb2.PublishModelResponse:
    """Manifest first, then chunks into a staging file; registered only if size and sha256 match."""
    first = await anext(aiter(requests), None)
    if first is None or first.WhichOneof("part") != "manifest":
        raise InvalidArgument("the first PublishModel message must carry the manifest")
    claim = manifest_from_proto(first.manifest)
    bound = log.bind(model=claim.name, version=claim.version)
    bound.info("cmp.publish.started", size_bytes=claim.size_bytes, sha256=claim.sha256)
    with store.begin_upload(claim) as upload:
        async with BackgroundWriter(upload.write) as writer:
            async for request in requests:
                if request.WhichOneof("part") != "chunk":
                    raise InvalidArgument("only the first PublishModel message may carry a manifest; "
                                          "the others carry chunks")
                await writer.put(request.chunk.offset, request.chunk.data)
        manifest, deduplicated = await asyncio.to_thread(upload.commit)
    bound.info("cmp.publish.done", deduplicated=deduplicated)
    return cmp_pb2.PublishModelResponse(manifest=manifest_to_proto(manifest), deduplicated=deduplicated)


async def fetch_responses(store: ModelStore,
                          request: cmp_pb2.FetchModelRequest) -> AsyncIterator[cmp_pb2.FetchModelResponse]:
    """The manifest, chunks from ``request.offset``, then the trailer with the whole file's sha256."""
    manifest, chunks = store.read(request.name, request.version, request.offset, request.sha256)
    bound = log.bind(model=manifest.name, version=manifest.version)
    bound.info("cmp.fetch.started", offset=request.offset, size_bytes=manifest.size_bytes)
    yield cmp_pb2.FetchModelResponse(manifest=manifest_to_proto(manifest))
    async for offset, data in read_ahead(chunks):
        yield chunk_message(cmp_pb2.FetchModelResponse, offset, data)
    yield cmp_pb2.FetchModelResponse(trailer=cmp_pb2.FetchModelTrailer(sha256=manifest.sha256,
                                                                       size_bytes=manifest.size_bytes))
    bound.info("cmp.fetch.done")


# --- client side -------------------------------------------------------------------------


async def publish_file(stub: cmp_grpc.ComputePlaneServiceStub, manifest: cmp_pb2.ModelManifest, path: Path,
                       progress: Progress | None = None,
                       timeout_s: float = DEFAULT_TRANSFER_TIMEOUT_S) -> cmp_pb2.PublishModelResponse:
    """Upload ``path`` as ``manifest``; size_bytes and sha256 are filled from the file when left empty."""
    path = Path(path)
    claim = cmp_pb2.ModelManifest()
    claim.CopyFrom(manifest)
    claim.size_bytes = claim.size_bytes or path.stat().st_size
    claim.sha256 = claim.sha256 or await asyncio.to_thread(sha256_file, path)
    call = stub.PublishModel(timeout=timeout_s)
    try:
        await call.write(cmp_pb2.PublishModelRequest(manifest=claim))
        async for offset, data in read_ahead(iter_chunks(path)):
            await call.write(chunk_message(cmp_pb2.PublishModelRequest, offset, data))
            if progress is not None:
                progress(offset + len(data), claim.size_bytes)
        await call.done_writing()
        return await call
    finally:
        call.cancel()  # no-op once finished; stops the upload if anything above raised


async def fetch_to_file(stub: cmp_grpc.ComputePlaneServiceStub, name: str, version: str, dest: Path,
                        resume: bool = True, sha256: str = "", progress: Progress | None = None,
                        timeout_s: float = DEFAULT_TRANSFER_TIMEOUT_S) -> cmp_pb2.ModelManifest:
    """Download a version to ``dest`` through ``dest.part``, verify its sha256, then rename into place.

    ``dest`` never holds a partial or unverified file. With ``resume`` an existing
    ``dest.part`` (from a dropped call) is continued from its size; a partial that turns
    out wrong (sha256 mismatch at the end) is deleted and DataLoss raised, so a retry
    starts clean. ``sha256``, when given, pins the content (FAILED_PRECONDITION otherwise).
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    if not resume:
        part.unlink(missing_ok=True)
    writer = await asyncio.to_thread(HashingWriter, part, None, True)
    try:
        call = stub.FetchModel(cmp_pb2.FetchModelRequest(name=name, version=version, offset=writer.size,
                                                         sha256=sha256), timeout=timeout_s)
        trailer, manifest = await _receive(call, writer, progress)
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.OUT_OF_RANGE or not writer.size:
            raise
        writer.close()  # the partial is longer than the artifact: it belongs to something else
        log.warning("cmp.fetch.partial_discarded", model=name, version=version, partial_bytes=writer.size)
        return await fetch_to_file(stub, name, version, dest, False, sha256, progress, timeout_s)
    finally:
        writer.close()
    if trailer.size_bytes != writer.size or trailer.sha256 != writer.hexdigest():
        part.unlink(missing_ok=True)
        raise DataLoss(f"fetched {name} {version}: {writer.size} bytes hashing to {writer.hexdigest()}, the store "
                       f"says {trailer.size_bytes} bytes with sha256 {trailer.sha256}; partial file deleted")
    await asyncio.to_thread(_promote, part, dest)
    log.info("cmp.fetch.saved", model=name, version=version, path=str(dest), sha256=trailer.sha256)
    return manifest


async def _receive(call: grpc.aio.UnaryStreamCall, writer: HashingWriter,
                   progress: Progress | None) -> tuple[cmp_pb2.FetchModelTrailer, cmp_pb2.ModelManifest]:
    manifest = cmp_pb2.ModelManifest()
    try:
        async with BackgroundWriter(writer.write) as background:
            async for response in call:
                part = response.WhichOneof("part")
                if part == "manifest":
                    manifest = response.manifest
                    writer.limit = manifest.size_bytes
                elif part == "chunk":
                    data = response.chunk.data
                    await background.put(response.chunk.offset, data)
                    if progress is not None:
                        progress(response.chunk.offset + len(data), manifest.size_bytes)
                elif part == "trailer":
                    return response.trailer, manifest
    finally:
        call.cancel()
    raise DataLoss("FetchModel stream ended without its trailer; the download is incomplete (resume it)")


def _promote(part: Path, dest: Path) -> None:
    with open(part, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(part, dest)
    fsync_dir(dest.parent)
