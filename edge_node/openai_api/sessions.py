"""The AI session an HTTP call generates in.

OpenAI clients know nothing of sessions, so a call either names one (header ``X-NetGPT-Session``,
as a gRPC UE would) or gets one: the edge establishes it at the core (``EstablishSession``) for
the UE and cell the call names (headers ``X-NetGPT-UE``, ``X-NetGPT-Cell``; the UE defaults to
the UE of the client certificate or UE token, the cell to the token's cell when this edge serves it,
else to the edge's only cell), and reuses it for that
UE and cell while the core knows it. Every response names its session in ``X-NetGPT-Session``.
"""

from __future__ import annotations

from collections import OrderedDict

import structlog

from edge_node.serving.sessions import LOOKUP_TIMEOUT_S, CoreLookup
from netgpt.errors import NotFound
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import control_plane_pb2_grpc as cp_grpc

log = structlog.get_logger(__name__)

SESSION_HEADER = "x-netgpt-session"
UE_HEADER = "x-netgpt-ue"
CELL_HEADER = "x-netgpt-cell"
MAX_BOUND_SESSIONS = 4096


class SessionBinder:
    def __init__(self, core: cp_grpc.ControlPlaneServiceStub, sessions: CoreLookup[cp_pb2.AiSession],
                 max_entries: int = MAX_BOUND_SESSIONS) -> None:
        self.core = core
        self.sessions = sessions
        self.max_entries = max_entries
        self._bound: OrderedDict[tuple[str, str], str] = OrderedDict()  # (ue, cell) -> session id, LRU

    async def session_for(self, request: cp_pb2.EstablishSessionRequest) -> str:
        """The session of ``request``'s UE and cell: the one made earlier while the core still knows it, else
        a new one."""
        key = (request.ue_id, request.cell_id)
        known = self._bound.get(key)
        if known is not None:
            try:
                await self.sessions.get(known)
                self._bound.move_to_end(key)
                return known
            except NotFound:  # expired or released at the core
                self._bound.pop(key, None)
        reply: cp_pb2.EstablishSessionResponse = await self.core.EstablishSession(request, timeout=LOOKUP_TIMEOUT_S)
        session = reply.session
        log.info("openai.session_established", session_id=session.session_id, ai_flow_id=session.ai_flow_id,
                 cell_id=session.cell_id)
        self._bound[key] = session.session_id
        while len(self._bound) > self.max_entries:
            self._bound.popitem(last=False)
        return session.session_id
