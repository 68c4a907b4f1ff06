"""The serving side of chunked artifact streaming: PublishModel into the store, FetchModel out of
it, and FetchBlob (ranges of a verified blob, from the core's store or a node's shelf)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Protocol

import structlog

from cmp.blobio import iter_chunks
from cmp.convert import manifest_from_proto, manifest_to_proto
from cmp.manifest import SHA256_RE, Manifest
from cmp.store import ModelStore
from cmp.transfer_io import BackgroundWriter, ChunkView, chunk_message, read_ahead
from cmp.upload_budget import UploadBudget
from netgpt.errors import InvalidArgument, OutOfRange
from netgpt.v1 import blob_pb2
from netgpt.v1 import compute_plane_pb2 as cmp_pb2

log = structlog.get_logger(__name__)


async def receive_publish(store: ModelStore, requests: AsyncIterator[cmp_pb2.PublishModelRequest | ChunkView],
                          accepted: Callable[[], Awaitable[None]] | None = None,
                          admit: Callable[[Manifest], None] | None = None) -> cmp_pb2.PublishModelResponse:
    """Manifest first, then chunks into a staging file; registered only if size and sha256 match.
    ``admit`` may refuse the manifest (by raising) before a byte is taken; ``accepted`` runs once the
    manifest is (the servicer sends the response headers: the client's go-ahead for the chunks)."""
    first = await anext(aiter(requests), None)
    if first is None or isinstance(first, ChunkView) or first.WhichOneof("part") != "manifest":
        raise InvalidArgument("the first PublishModel message must carry the manifest")
    claim = manifest_from_proto(first.manifest)
    if admit is not None:
        admit(claim)
    bound = log.bind(model=claim.name, version=claim.version)
    bound.info("cmp.publish.started", size_bytes=claim.size_bytes, sha256=claim.sha256)
    with store.begin_upload(claim) as upload:
        if accepted is not None:
            await accepted()
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


class BlobShelf(Protocol):
    """Verified blobs by sha256: the core's ``ModelStore``, a node's ``BlobCache``."""

    def blob(self, sha256: str) -> tuple[Path, int]:
        """Path and size of a verified blob; ``NotFound`` when it is not held."""
        ...


async def blob_responses(shelf: BlobShelf, budget: UploadBudget,
                         request: blob_pb2.FetchBlobRequest) -> AsyncIterator[blob_pb2.FetchBlobResponse]:
    """Chunks of ``[offset, offset + length)`` of a verified blob, then the whole blob's trailer."""
    if not SHA256_RE.fullmatch(request.sha256):
        raise InvalidArgument("sha256 must be 64 lower-case hex characters")
    path, size = shelf.blob(request.sha256)
    if request.offset > size:
        raise OutOfRange(f"offset {request.offset} is beyond the end of blob {request.sha256[:16]} ({size} bytes)")
    end = min(size, request.offset + request.length) if request.length else size
    with budget.stream(request.node_id):
        async for offset, data in read_ahead(iter_chunks(path, request.offset, end)):
            await budget.spend(len(data))
            yield chunk_message(blob_pb2.FetchBlobResponse, offset, data)
    yield blob_pb2.FetchBlobResponse(trailer=cmp_pb2.FetchModelTrailer(sha256=request.sha256, size_bytes=size))
