"""The edge node's UserPlaneService: concise prompts from UEs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import structlog

from edge_node.pipeline import EdgePipeline
from edge_node.sessions import SessionDirectory
from netgpt.errors import InvalidArgument
from netgpt.v1 import user_plane_pb2 as up_pb2
from netgpt.v1 import user_plane_pb2_grpc as up_grpc


class EdgeUserPlane(up_grpc.UserPlaneServiceServicer):
    def __init__(self, pipeline: EdgePipeline, sessions: SessionDirectory) -> None:
        self.pipeline = pipeline
        self.sessions = sessions

    async def Generate(self, request: up_pb2.GenerateRequest, context) -> AsyncIterator[up_pb2.GenerateResponse]:
        if request.kind == up_pb2.PROMPT_KIND_COMPREHENSIVE:
            raise InvalidArgument("edge nodes take concise prompts from UEs (PROMPT_KIND_CONCISE)")
        self.pipeline.validate(request)
        session = await self.sessions.get(request.session_id)
        with structlog.contextvars.bound_contextvars(session_id=session.session_id, ai_flow_id=session.ai_flow_id):
            async for event in self.pipeline.run(request, session, context.time_remaining()):
                yield event
