"""One concise-prompt generation at the edge, whatever protocol asked for it: the gRPC
``UserPlaneService.Generate`` and the OpenAI-compatible HTTP API both call this and only encode
what it yields (KServe's split of protocol adapters over one model-serving call).

:meth:`EdgeGenerate.resolve` decodes and validates the request, resolves its session (and named
workflow) at the core and admits it — all before anything streams, so a bad request fails
with its own status; :meth:`EdgeGenerate.run` then yields the pipeline's domain events.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing

import structlog

from edge_node.serving.pipeline import EdgePipeline
from edge_node.serving.request import EdgeRequest, admit
from edge_node.serving.sessions import CoreLookup
from edge_node.serving.workflow_plan import DEFAULT_PLAN, plan_from_workflow
from netgpt.errors import FailedPrecondition, InvalidArgument
from netgpt.model_slot import ModelSlot
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import user_plane_pb2 as up_pb2
from netgpt.v1 import workflow_pb2
from up.convert import decode_request
from up.events import Event
from up.limits import Limits


class EdgeGenerate:
    def __init__(self, pipeline: EdgePipeline, slot: ModelSlot, limits: Limits,
                 sessions: CoreLookup[cp_pb2.AiSession], workflows: CoreLookup[workflow_pb2.Workflow]) -> None:
        self.pipeline = pipeline
        self.slot = slot
        self.limits = limits
        self.sessions = sessions
        self.workflows = workflows

    async def resolve(self, request: up_pb2.GenerateRequest, deadline_s: float | None) -> EdgeRequest:
        """The admitted request: decoded, in its session's RAN context, with its plan and pinned model."""
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
        return EdgeRequest(request=decoded, session_id=session.session_id, ran=ran, plan=plan,
                           deadline_s=deadline_s, served=self.slot.current)

    async def run(self, request: EdgeRequest) -> AsyncGenerator[Event, None]:
        """The pipeline's events for ``request``, logged with its session and AI flow ids; closing this
        iterator early (the client went away) stops the pipeline."""
        with structlog.contextvars.bound_contextvars(session_id=request.session_id, ai_flow_id=request.ran.ai_flow_id):
            async with aclosing(self.pipeline.run(request)) as events:
                async for event in events:
                    yield event
