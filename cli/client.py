"""Client side of the personalised-generation flow: session set-up, streaming, and a hop-by-hop printout."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TextIO

import grpc

from netgpt.channels import DEFAULT_TIMEOUT_S, open_channel
from netgpt.tls import Transport
from netgpt.tracing import tracer
from netgpt.v1 import common_pb2
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import control_plane_pb2_grpc as cp_grpc
from netgpt.v1 import user_plane_pb2 as up_pb2
from netgpt.v1 import user_plane_pb2_grpc as up_grpc
from netgpt.words import enum_word


@dataclass
class Question:
    prompt: str
    ue_id: str = "ue-1"
    cell_id: str = "cell-harbour-1"
    task: int = up_pb2.TASK_CLASS_CHAT
    route: int = up_pb2.ROUTE_PREFERENCE_UNSPECIFIED
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


class Printer:
    """Writes what happened at each hop; ``out=None`` prints nothing."""

    def __init__(self, out: TextIO | None = sys.stdout) -> None:
        self.out = out

    def line(self, text: str = "") -> None:
        if self.out is not None:
            print(text, file=self.out, flush=True)

    def session(self, s: cp_pb2.AiSession) -> None:
        cloud = s.serving_cloud.node_id or "none"
        self.line(f"[core]  session {s.session_id} flow {s.ai_flow_id}: UE {s.ue_id} in {s.cell_id} "
                  f"-> edge {s.serving_edge.node_id} ({s.serving_edge.address}), cloud {cloud}")

    def event(self, event: up_pb2.GenerateResponse, state: dict) -> None:
        kind = event.WhichOneof("event")
        if kind == "comprehensive_prompt":
            cp = event.comprehensive_prompt
            self.line(f"[edge]  comprehensive prompt ({cp.prompt_tokens} tokens, "
                      f"{len(cp.knowledge_used)} local facts):")
            for text_line in cp.text.splitlines():
                self.line(f"          {text_line}")
        elif kind == "tokens":
            source = enum_word(common_pb2.NodeRole, event.tokens.source)
            if state.get("source") != source:
                state["source"] = source
                if self.out is not None:
                    self.out.write(f"[{source}] answer: ")
            if self.out is not None:
                self.out.write(event.tokens.text)
                self.out.flush()
        elif kind == "fallback":
            self.line(f"\n[edge]  cloud failed ({event.fallback.reason}); "
                      f"discarding {event.fallback.discarded_tokens} tokens, answering at the edge")
            state.pop("source", None)
        elif kind == "summary":
            self.summary(event.summary)

    def summary(self, s: up_pb2.GenerationSummary) -> None:
        where = enum_word(common_pb2.NodeRole, s.terminated_at)
        lat = s.latency
        self.line("")
        self.line(f"[done]  terminated at {where}: {up_pb2.RouteReason.Name(s.reason)} ({s.reason_detail})"
                  f"{' [fallback]' if s.fallback else ''}")
        self.line(f"        tokens: prompt {s.prompt_tokens}, completion {s.completion_tokens} "
                  f"({up_pb2.FinishReason.Name(s.finish_reason)}); bytes edge->cloud {s.bytes_edge_to_cloud}")
        self.line(f"        latency ms: personalise {lat.personalise_ms:.1f}, edge {lat.edge_generate_ms:.1f}, "
                  f"cloud {lat.cloud_ms:.1f}, first token {lat.time_to_first_token_ms:.1f}, total {lat.total_ms:.1f}")
        models = [f"edge {s.edge_model.name}@{s.edge_model.version}"]
        if s.cloud_model.name:
            models.append(f"cloud {s.cloud_model.name}@{s.cloud_model.version}")
        self.line(f"        models: {', '.join(models)}")


async def establish(core: cp_grpc.ControlPlaneServiceStub, q: Question) -> cp_pb2.AiSession:
    request = cp_pb2.EstablishSessionRequest(ue_id=q.ue_id, cell_id=q.cell_id,
                                             qos=common_pb2.QoS(latency_budget_ms=q.latency_budget_ms))
    reply = await core.EstablishSession(request, timeout=min(DEFAULT_TIMEOUT_S, q.timeout_s))
    return reply.session


async def ask(core_address: str, question: Question, printer: Printer | None = None,
              transport: Transport | None = None) -> Transcript:
    """Establish a session, stream the answer from the serving edge, release the session.

    ``transport``: who asks (None: the process's client identity)."""
    printer = printer or Printer(None)
    with tracer(__name__).start_as_current_span("netgpt.ask", attributes={"netgpt.ue_id": question.ue_id,
                                                                            "netgpt.cell_id": question.cell_id}):
        return await _ask(core_address, question, printer, transport)


async def _ask(core_address: str, question: Question, printer: Printer, transport: Transport | None) -> Transcript:
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
                state: dict = {}
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
