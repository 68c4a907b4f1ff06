"""The cloud node's UserPlaneService: decode and validate, run the cloud generator, encode its events."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import structlog

from cloud_node.generator import CloudGenerator
from netgpt.errors import InvalidArgument
from netgpt.model_slot import ModelSlot
from netgpt.v1 import user_plane_pb2 as up_pb2
from netgpt.v1 import user_plane_pb2_grpc as up_grpc
from up.convert import decode_request, encode_event
from up.limits import Limits


class CloudUserPlane(up_grpc.UserPlaneServiceServicer):
    def __init__(self, slot: ModelSlot, generator: CloudGenerator, limits: Limits) -> None:
        self.slot = slot
        self.generator = generator
        self.limits = limits

    async def Generate(self, request: up_pb2.GenerateRequest,
                       context: grpc.aio.ServicerContext) -> AsyncIterator[up_pb2.GenerateResponse]:
        if request.kind == up_pb2.PROMPT_KIND_CONCISE:
            raise InvalidArgument("cloud nodes serve comprehensive prompts; send concise prompts to an edge node")
        decoded = decode_request(request, self.limits)
        served = self.slot.current  # read once: this request finishes on it even if a deploy swaps the slot
        with structlog.contextvars.bound_contextvars(session_id=decoded.session_id, ai_flow_id=decoded.ran.ai_flow_id):
            async for event in self.generator.run(decoded, served):
                yield encode_event(event)
