"""Lookups the edge makes at the core (sessions, workflows), cached briefly so the core is not
on every request's path and a short core outage does not stop established sessions."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Generic, TypeVar

import grpc

from netgpt.errors import InvalidArgument, NotFound, Unavailable
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import control_plane_pb2_grpc as cp_grpc
from netgpt.v1 import workflow_pb2, workflow_pb2_grpc

LOOKUP_TIMEOUT_S = 3.0
T = TypeVar("T")


class CoreLookup(Generic[T]):
    def __init__(self, fetch: Callable[[str], Awaitable[T]], what: str, ttl_s: float = 10.0) -> None:
        self._fetch = fetch
        self._what = what
        self._ttl_s = ttl_s
        self._cache: dict[str, tuple[float, T]] = {}

    def forget(self, keys: Iterable[str]) -> None:
        """Drop cached answers (the core said they changed): the next ``get`` asks the core."""
        for key in keys:
            self._cache.pop(key, None)

    async def refresh(self, key: str) -> T:
        """The core's current answer, not the cached one (e.g. a session re-anchored by a handover)."""
        self._cache.pop(key, None)
        return await self.get(key)

    async def get(self, key: str) -> T:
        if not key:
            raise InvalidArgument(f"{self._what} is required")
        cached = self._cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < self._ttl_s:
            return cached[1]
        try:
            value = await self._fetch(key)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                self._cache.pop(key, None)
                raise NotFound(exc.details()) from exc
            raise Unavailable(f"cannot reach the core controller to look up the {self._what}: "
                              f"{exc.code().name}") from exc
        self._cache[key] = (time.monotonic(), value)
        return value


def session_directory(core: cp_grpc.ControlPlaneServiceStub, ttl_s: float) -> CoreLookup[cp_pb2.AiSession]:
    async def fetch(session_id: str) -> cp_pb2.AiSession:
        reply: cp_pb2.GetSessionResponse = await core.GetSession(cp_pb2.GetSessionRequest(session_id=session_id),
                                                                 timeout=LOOKUP_TIMEOUT_S)
        return reply.session

    return CoreLookup(fetch, "session_id (establish a session with the control plane first)", ttl_s)


def workflow_directory(core: workflow_pb2_grpc.WorkflowServiceStub, ttl_s: float) -> CoreLookup[workflow_pb2.Workflow]:
    async def fetch(name: str) -> workflow_pb2.Workflow:
        reply: workflow_pb2.GetWorkflowResponse = await core.GetWorkflow(workflow_pb2.GetWorkflowRequest(name=name),
                                                                          timeout=LOOKUP_TIMEOUT_S)
        return reply.workflow

    return CoreLookup(fetch, "workflow name", ttl_s)


def session_owner(sessions: CoreLookup[cp_pb2.AiSession]) -> Callable[[Any], Awaitable[str]]:
    """The UE a request's session belongs to: a UE may generate only in its own sessions."""

    async def owner(request: Any) -> str:
        return (await sessions.get(request.session_id)).ue_id

    return owner
