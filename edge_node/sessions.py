"""Session lookups against the core, cached briefly so the core is not on every request's path."""

from __future__ import annotations

import time

import grpc

from netgpt.errors import InvalidArgument, NotFound, Unavailable
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import control_plane_pb2_grpc as cp_grpc

LOOKUP_TIMEOUT_S = 3.0


class SessionDirectory:
    def __init__(self, core: cp_grpc.ControlPlaneServiceStub, ttl_s: float = 10.0) -> None:
        self._core = core
        self._ttl_s = ttl_s
        self._cache: dict[str, tuple[float, cp_pb2.AiSession]] = {}

    async def get(self, session_id: str) -> cp_pb2.AiSession:
        if not session_id:
            raise InvalidArgument("session_id is required; establish a session with the control plane first")
        cached = self._cache.get(session_id)
        if cached is not None and time.monotonic() - cached[0] < self._ttl_s:
            return cached[1]
        try:
            reply = await self._core.GetSession(cp_pb2.GetSessionRequest(session_id=session_id),
                                                timeout=LOOKUP_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                self._cache.pop(session_id, None)
                raise NotFound(exc.details()) from exc
            raise Unavailable(f"cannot reach the core controller to check the session: {exc.code().name}") from exc
        self._cache[session_id] = (time.monotonic(), reply.session)
        return reply.session
