"""The edge node's UserPlaneService: concise prompts from UEs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import structlog

from edge_node.pipeline import EdgePipeline
from edge_node.sessions import CoreLookup
from edge_node.workflow_plan import DEFAULT_PLAN, plan_from_workflow
from netgpt.errors import InvalidArgument
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import user_plane_pb2 as up_pb2
from netgpt.v1 import workflow_pb2
from netgpt.v1 import user_plane_pb2_grpc as up_grpc


class EdgeUserPlane(up_grpc.UserPlaneServiceServicer):
    def __init__(self, pipeline: EdgePipeline, sessions: CoreLookup[cp_pb2.AiSession],
                 workflows: CoreLookup[workflow_pb2.Workflow]) -> None:
        self.pipeline = pipeline
        self.sessions = sessions
        self.workflows = workflows

    async def Generate(self, request: up_pb2.GenerateRequest, context) -> AsyncIterator[up_pb2.GenerateResponse]:
        if request.kind == up_pb2.PROMPT_KIND_COMPREHENSIVE:
            raise InvalidArgument("edge nodes take concise prompts from UEs (PROMPT_KIND_CONCISE)")
        checked = self.pipeline.validate(request)  # bad input fails before the core is asked anything
        session = await self.sessions.get(request.session_id)
        plan = plan_from_workflow(await self.workflows.get(request.workflow)) if request.workflow else DEFAULT_PLAN
        with structlog.contextvars.bound_contextvars(session_id=session.session_id, ai_flow_id=session.ai_flow_id):
            async for event in self.pipeline.run(request, checked, session, context.time_remaining(), plan):
                yield event
