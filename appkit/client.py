"""Client side of the personalised-generation flow: session set-up and the answer's stream."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import grpc

from netgpt.channels import DEFAULT_TIMEOUT_S, open_channel
from netgpt.tls import Transport
from netgpt.tracing import tracer
from netgpt.v1 import common_pb2
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import control_plane_pb2_grpc as cp_grpc
from netgpt.v1 import user_plane_pb2 as up_pb2
from netgpt.v1 import user_plane_pb2_grpc as up_grpc


@dataclass
class Question:
    prompt: str
    ue_id: str = "ue-1"
    cell_id: str = "cell-harbour-1"
    task: up_pb2.TaskClass = up_pb2.TASK_CLASS_CHAT
    route: up_pb2.RoutePreference = up_pb2.ROUTE_PREFERENCE_UNSPECIFIED
    workflow: str = ""  # a workflow applied at the core whose steps the edge runs; empty: the default steps
    max_new_tokens: int = 0
    latency_budget_ms: int = 0
    timeout_s: float = 60.0


@dataclass
class Transcript:
    session: cp_pb2.AiSession
    events: list[up_pb2.GenerateResponse] = field(default_factory=list)

    @property
    def summary(self) -> up_pb2.GenerationSummary:
        return self.events[-1].summary


class Hops(Protocol):
    """What :func:`ask` reports as an answer streams in (``cli.printer.Printer`` prints it hop by hop)."""

    def session(self, s: cp_pb2.AiSession) -> None:
        """The session the core set up: the serving edge and cloud."""

    def event(self, event: up_pb2.GenerateResponse, state: dict[str, str]) -> None:
        """One event of the edge's stream; ``state`` is the watcher's own, kept across one answer's events."""


class _Unwatched:
    def session(self, s: cp_pb2.AiSession) -> None:
        pass

    def event(self, event: up_pb2.GenerateResponse, state: dict[str, str]) -> None:
        pass


async def establish(core: cp_grpc.ControlPlaneServiceStub, q: Question) -> cp_pb2.AiSession:
    request = cp_pb2.EstablishSessionRequest(ue_id=q.ue_id, cell_id=q.cell_id,
                                             qos=common_pb2.QoS(latency_budget_ms=q.latency_budget_ms))
    reply: cp_pb2.EstablishSessionResponse = await core.EstablishSession(
        request, timeout=min(DEFAULT_TIMEOUT_S, q.timeout_s))
    return reply.session


async def ask(core_address: str, question: Question, printer: Hops | None = None,
              transport: Transport | None = None) -> Transcript:
    """Establish a session, stream the answer from the serving edge, release the session.

    ``printer``: who watches the hops (None: nobody); ``transport``: who asks (None: the process's client identity)."""
    printer = printer or _Unwatched()
    with tracer(__name__).start_as_current_span("netgpt.ask", attributes={"netgpt.ue_id": question.ue_id,
                                                                            "netgpt.cell_id": question.cell_id}):
        return await _ask(core_address, question, printer, transport)


async def _ask(core_address: str, question: Question, printer: Hops, transport: Transport | None) -> Transcript:
    """One trace from the UE: the session's establishment, the answer's stream, the release."""
    async with open_channel(core_address, transport) as core_channel:
        core = cp_grpc.ControlPlaneServiceStub(core_channel)
        session = await establish(core, question)
        printer.session(session)
        transcript = Transcript(session)
        try:
            async with open_channel(session.serving_edge.address, transport) as edge_channel:
                edge = up_grpc.UserPlaneServiceStub(edge_channel)
                request = up_pb2.GenerateRequest(
                    session_id=session.session_id, kind=up_pb2.PROMPT_KIND_CONCISE, prompt=question.prompt,
                    ran=common_pb2.RanContext(cell_id=question.cell_id, ue_id=question.ue_id),
                    params=up_pb2.GenerationParams(max_new_tokens=question.max_new_tokens),
                    task=question.task, route=question.route, workflow=question.workflow)
                state: dict[str, str] = {}
                async for event in edge.Generate(request, timeout=question.timeout_s):
                    transcript.events.append(event)
                    printer.event(event, state)
        finally:
            try:
                await core.ReleaseSession(cp_pb2.ReleaseSessionRequest(session_id=session.session_id),
                                          timeout=DEFAULT_TIMEOUT_S)
            except grpc.aio.AioRpcError:
                pass  # the core may be gone; the session dies with it
        return transcript
