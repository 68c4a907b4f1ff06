"""One edge request, resolved once: the client's prompt and parameters, its session, the workflow
plan, the deadline and the model pinned for the whole request."""

from __future__ import annotations

from dataclasses import dataclass

from edge_node.serving.workflow_plan import WorkflowPlan
from netgpt.errors import FailedPrecondition, InvalidArgument, excerpt
from netgpt.model_slot import Served
from netgpt.v1 import control_plane_pb2 as cp_pb2
from up.request import GenerationRequest, Ran


@dataclass(frozen=True)
class EdgeRequest:
    request: GenerationRequest
    session_id: str
    ran: Ran  # the session's RAN context: its cell, UE, slice, QoS and AI flow id
    plan: WorkflowPlan
    deadline_s: float | None
    served: Served  # a hot swap never splits a request: every step uses this model

    @property
    def prompt(self) -> str:
        return self.request.prompt

    @property
    def latency_budget_ms(self) -> int:
        return self.ran.latency_budget_ms or self.request.ran.latency_budget_ms

    def forward_ran(self) -> Ran:
        """The RAN context sent to the cloud: the session's cell and flow, never the UE's identity.

        Its QoS priority is what the cloud's scheduler admits by (1 first .. 15): a named workflow's
        priority (the same scale), else the request's QoS if it set any, else the session's."""
        sent = self.request.ran
        qos_given = sent.priority or sent.latency_budget_ms
        priority = self.plan.priority or (sent.priority if qos_given else self.ran.priority)
        return Ran(cell_id=self.ran.cell_id, ue_id="", slice_id=sent.slice_id or self.ran.slice_id,
                   priority=priority,
                   latency_budget_ms=sent.latency_budget_ms if qos_given else self.ran.latency_budget_ms,
                   ai_flow_id=self.ran.ai_flow_id)


def session_ran(session: cp_pb2.AiSession) -> Ran:
    return Ran(cell_id=session.cell_id, ue_id=session.ue_id, slice_id=session.slice_id,
               priority=session.qos.priority, latency_budget_ms=session.qos.latency_budget_ms,
               ai_flow_id=session.ai_flow_id)


def admit(request: GenerationRequest, session: cp_pb2.AiSession, cells: frozenset[str]) -> Ran:
    """The session's RAN context, once the request agrees with it and this edge serves its cell."""
    sent = request.ran.cell_id
    if sent and sent != session.cell_id:
        raise InvalidArgument(f"ran.cell_id {excerpt(sent)} is not the cell of session {session.session_id}, "
                              f"{session.cell_id!r}; after a handover, re-read the session (GetSession) "
                              "for its new cell and edge")
    if session.cell_id not in cells:
        raise FailedPrecondition(f"this edge does not serve cell {session.cell_id!r} of session "
                                 f"{session.session_id}; send the request to the session's serving edge "
                                 f"({session.serving_edge.node_id or 'see the session'})")
    return session_ran(session)
