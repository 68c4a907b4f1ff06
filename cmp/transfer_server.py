"""The core's side of chunked artifact streaming: PublishModel into the store, FetchModel out of it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import structlog

from cmp.convert import manifest_from_proto, manifest_to_proto
from cmp.store import ModelStore
from cmp.transfer_io import BackgroundWriter, chunk_message, read_ahead
from netgpt.errors import InvalidArgument
from netgpt.v1 import compute_plane_pb2 as cmp_pb2

log = structlog.get_logger(__name__)


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
