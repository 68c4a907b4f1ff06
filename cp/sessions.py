"""AI sessions: one per UE attachment, binding a serving edge, a cloud and an AI flow id."""

from __future__ import annotations

import time
import uuid

from cp.registry import NodeRegistry
from netgpt.errors import InvalidArgument, NotFound
from netgpt.v1 import common_pb2, control_plane_pb2

MAX_LATENCY_BUDGET_MS = 600_000


class SessionTable:
    def __init__(self, registry: NodeRegistry) -> None:
        self._registry = registry
        self._sessions: dict[str, control_plane_pb2.AiSession] = {}

    def establish(self, request: control_plane_pb2.EstablishSessionRequest) -> control_plane_pb2.AiSession:
        if not request.ue_id:
            raise InvalidArgument("ue_id is required")
        if not request.cell_id:
            raise InvalidArgument("cell_id is required (the cell the UE is attached to)")
        if request.qos.latency_budget_ms > MAX_LATENCY_BUDGET_MS:
            raise InvalidArgument(f"qos.latency_budget_ms must be <= {MAX_LATENCY_BUDGET_MS}")
        edge = self._registry.pick_edge(request.cell_id)
        cloud = self._registry.pick_cloud()
        session = control_plane_pb2.AiSession(
            session_id=f"sess-{uuid.uuid4().hex[:12]}",
            ai_flow_id=f"flow-{uuid.uuid4().hex[:12]}",
            ue_id=request.ue_id,
            cell_id=request.cell_id,
            slice_id=request.slice_id,
            qos=request.qos,
            serving_edge=edge.info,
            serving_cloud=cloud.info if cloud else common_pb2.NodeInfo(),
        )
        session.created_at.FromNanoseconds(time.time_ns())
        self._sessions[session.session_id] = session
        return session

    def get(self, session_id: str) -> control_plane_pb2.AiSession:
        if not session_id:
            raise InvalidArgument("session_id is required")
        session = self._sessions.get(session_id)
        if session is None:
            raise NotFound(f"session {session_id!r} does not exist (released, expired or never established)")
        return session

    def release(self, session_id: str) -> None:
        self.get(session_id)
        del self._sessions[session_id]

    def __len__(self) -> int:
        return len(self._sessions)
