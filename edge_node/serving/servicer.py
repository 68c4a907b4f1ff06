"""The edge node's UserPlaneService: a thin gRPC adapter over :class:`EdgeGenerate` (decode,
session, admission and the pipeline live there, shared with the OpenAI-compatible HTTP API)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing

import grpc

from edge_node.serving.generate_call import EdgeGenerate
from netgpt.v1 import user_plane_pb2 as up_pb2
from netgpt.v1 import user_plane_pb2_grpc as up_grpc
from up.convert import encode_event


class EdgeUserPlane(up_grpc.UserPlaneServiceServicer):
    def __init__(self, generate: EdgeGenerate) -> None:
        self.generate = generate

    async def Generate(self, request: up_pb2.GenerateRequest,
                       context: grpc.aio.ServicerContext) -> AsyncIterator[up_pb2.GenerateResponse]:
        edge_request = await self.generate.resolve(request, context.time_remaining())
        async with aclosing(self.generate.run(edge_request)) as events:
            async for event in events:
                yield encode_event(event)
