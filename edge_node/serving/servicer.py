"""The edge node's UserPlaneService: decode and validate a concise prompt, resolve its session and
workflow at the core, run the pipeline, encode its events."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import structlog

from edge_node.serving.pipeline import EdgePipeline
from edge_node.serving.request import EdgeRequest, admit
from edge_node.serving.sessions import CoreLookup
from edge_node.serving.workflow_plan import DEFAULT_PLAN, plan_from_workflow
from netgpt.errors import FailedPrecondition, InvalidArgument
from netgpt.model_slot import ModelSlot
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import user_plane_pb2 as up_pb2
from netgpt.v1 import user_plane_pb2_grpc as up_grpc
from netgpt.v1 import workflow_pb2
from up.convert import decode_request, encode_event
from up.limits import Limits


class EdgeUserPlane(up_grpc.UserPlaneServiceServicer):
    def __init__(self, pipeline: EdgePipeline, slot: ModelSlot, limits: Limits,
                 sessions: CoreLookup[cp_pb2.AiSession], workflows: CoreLookup[workflow_pb2.Workflow]) -> None:
        self.pipeline = pipeline
        self.slot = slot
        self.limits = limits
        self.sessions = sessions
        self.workflows = workflows

    async def Generate(self, request: up_pb2.GenerateRequest,
                       context: grpc.aio.ServicerContext) -> AsyncIterator[up_pb2.GenerateResponse]:
        if request.kind == up_pb2.PROMPT_KIND_COMPREHENSIVE:
            raise InvalidArgument("edge nodes take concise prompts from UEs (PROMPT_KIND_CONCISE)")
        decoded = decode_request(request, self.limits)  # bad input fails before the core is asked anything
        session = await self.sessions.get(decoded.session_id)
        try:
            ran = admit(decoded, session, self.pipeline.settings.cells)
        except (InvalidArgument, FailedPrecondition):  # a cached session may predate a handover: ask once more
            session = await self.sessions.refresh(decoded.session_id)
            ran = admit(decoded, session, self.pipeline.settings.cells)
        plan = plan_from_workflow(await self.workflows.get(decoded.workflow)) if decoded.workflow else DEFAULT_PLAN
        edge_request = EdgeRequest(request=decoded, session_id=session.session_id, ran=ran, plan=plan,
                                   deadline_s=context.time_remaining(), served=self.slot.current)
        with structlog.contextvars.bound_contextvars(session_id=session.session_id, ai_flow_id=ran.ai_flow_id):
            async for event in self.pipeline.run(edge_request):
                yield encode_event(event)
