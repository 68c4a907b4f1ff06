"""ComputePlaneService with the model store: ListModels (from heartbeats) plus publish, list,
describe and fetch of stored versions. Thin: decode, call the store or transfer, encode."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from cmp.convert import manifest_to_proto
from cmp.servicer import ComputePlaneServicer
from cmp.store import ModelStore
from cmp.transfer import fetch_responses, receive_publish
from cp.registry import NodeRegistry
from netgpt.v1 import compute_plane_pb2 as cmp_pb2


class ModelStoreServicer(ComputePlaneServicer):
    def __init__(self, registry: NodeRegistry, store: ModelStore) -> None:
        super().__init__(registry)
        self.store = store

    async def PublishModel(self, request_iterator: AsyncIterator[cmp_pb2.PublishModelRequest],
                           context: grpc.aio.ServicerContext) -> cmp_pb2.PublishModelResponse:
        return await receive_publish(self.store, request_iterator)

    async def ListModelVersions(self, request: cmp_pb2.ListModelVersionsRequest,
                                context: grpc.aio.ServicerContext) -> cmp_pb2.ListModelVersionsResponse:
        manifests = [manifest_to_proto(m) for m in self.store.versions(request.name)]
        return cmp_pb2.ListModelVersionsResponse(manifests=manifests)

    async def DescribeModelVersion(self, request: cmp_pb2.DescribeModelVersionRequest,
                                   context: grpc.aio.ServicerContext) -> cmp_pb2.DescribeModelVersionResponse:
        manifest = self.store.describe(request.name, request.version)
        return cmp_pb2.DescribeModelVersionResponse(manifest=manifest_to_proto(manifest))

    async def FetchModel(self, request: cmp_pb2.FetchModelRequest,
                         context: grpc.aio.ServicerContext) -> AsyncIterator[cmp_pb2.FetchModelResponse]:
        async for response in fetch_responses(self.store, request):
            yield response
