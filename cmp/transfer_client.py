"""The client side of chunked artifact streaming: ``publish_file`` and ``fetch_to_file``, used by
the CLI, the benchmarks and the nodes' deploy agent."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from pathlib import Path

import grpc
import structlog

from cmp.blobio import HashingWriter, fsync_dir, iter_chunks
from cmp.transfer_io import MANIFEST_ACCEPTED, BackgroundWriter, chunk_message, read_ahead
from netgpt.alloc import tune_for_transfers
from netgpt.errors import DataLoss
from netgpt.hashing import sha256_file
from netgpt.v1 import compute_plane_pb2 as cmp_pb2
from netgpt.v1 import compute_plane_pb2_grpc as cmp_grpc

log = structlog.get_logger(__name__)

Progress = Callable[[int, int], None]  # (bytes done, total bytes)
DEFAULT_TRANSFER_TIMEOUT_S = 3600.0  # a whole multi-GB checkpoint must fit in one call's deadline
GO_AHEAD_S = 5.0  # how long a publish waits for the server's go-ahead before streaming regardless


async def publish_file(stub: cmp_grpc.ComputePlaneServiceStub, manifest: cmp_pb2.ModelManifest, path: Path,
                       progress: Progress | None = None,
                       timeout_s: float = DEFAULT_TRANSFER_TIMEOUT_S) -> cmp_pb2.PublishModelResponse:
    """Upload ``path`` as ``manifest``; size_bytes and sha256 are filled from the file when left empty."""
    path = Path(path)
    tune_for_transfers()
    claim = cmp_pb2.ModelManifest()
    claim.CopyFrom(manifest)
    claim.size_bytes = claim.size_bytes or path.stat().st_size
    claim.sha256 = claim.sha256 or await asyncio.to_thread(sha256_file, path)

    async def messages() -> AsyncIterator[cmp_pb2.PublishModelRequest]:
        yield cmp_pb2.PublishModelRequest(manifest=claim)
        async for offset, data in read_ahead(iter_chunks(path)):
            yield chunk_message(cmp_pb2.PublishModelRequest, offset, data)
            if progress is not None:  # the chunk before has been sent
                progress(offset + len(data), claim.size_bytes)

    return await publish_messages(stub, messages(), timeout_s)


async def publish_messages(stub: cmp_grpc.ComputePlaneServiceStub,
                           messages: AsyncIterable[cmp_pb2.PublishModelRequest] | Iterable[cmp_pb2.PublishModelRequest],
                           timeout_s: float = DEFAULT_TRANSFER_TIMEOUT_S,
                           go_ahead_s: float = GO_AHEAD_S) -> cmp_pb2.PublishModelResponse:
    """PublishModel with ``messages`` (manifest first): the chunks go only after the server's go-ahead
    header. A rejected manifest (ALREADY_EXISTS, INVALID_ARGUMENT) then raises with the server's
    status; streaming straight away, a chunk in flight when the server ends the call fails in grpc's
    client as INTERNAL "Failed execute_batch", hiding it."""
    stream = aiter(messages) if isinstance(messages, AsyncIterable) else _async(messages)
    call = stub.PublishModel(timeout=timeout_s)
    try:
        first = await anext(stream, None)
        if first is not None:
            await call.write(first)
            if not await _go_ahead(call, go_ahead_s):
                reply: cmp_pb2.PublishModelResponse = await call  # raises the server's status
                return reply
        try:
            async for message in stream:
                await call.write(message)
            await call.done_writing()
        except asyncio.InvalidStateError:
            pass  # the server has ended the call: its status follows
        reply = await call
        return reply
    finally:
        call.cancel()  # no-op once finished; stops the upload if anything above raised


async def _go_ahead(call: grpc.aio.StreamUnaryCall, wait_s: float) -> bool:
    """True once the server accepted the manifest; False when it ended the call instead. A core from
    before the go-ahead sends no header until the end: after ``wait_s`` the chunks go anyway."""
    try:
        headers = await asyncio.wait_for(asyncio.shield(call.initial_metadata()), wait_s)
    except TimeoutError:
        log.warning("cmp.publish.no_go_ahead", waited_s=wait_s)
        return True
    return tuple(headers or ()) == MANIFEST_ACCEPTED


async def _async(items: Iterable[cmp_pb2.PublishModelRequest]) -> AsyncIterator[cmp_pb2.PublishModelRequest]:
    for item in items:
        yield item


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
    tune_for_transfers()
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
