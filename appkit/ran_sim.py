"""The RAN simulator: replay a mobility trace against the core and drive requests from the moving UEs
(``netgpt ran-sim`` is its command).

The trace is CSV with a header: ``time,ue,cell,event`` (seconds from the start, UE id, cell id,
``attach`` | ``handover`` | ``detach``), optionally ``slice`` and ``five_qi`` columns read on attach.
The simulator plays the RAN (RanService: AttachUe, HandoverUe, DetachUe) and every UE:

- on attach, the UE establishes an AI session (no QoS of its own: the core derives it from the 5QI)
  and keeps sending concise prompts to its serving edge, one after another;
- after every RAN event the UE re-reads its session (GetSession) and sends its next request to the
  serving edge named there, never re-establishing; a request in flight finishes where it started;
- a request that reaches the old edge after the core re-anchored the session but before the UE
  re-read it is refused there (FAILED_PRECONDITION, nothing streamed, naming the serving edge): the
  UE re-reads its session and sends it once more to the new edge (counted as ``redirected``);
- on detach, the UE finishes its request in flight and the RAN detaches it (its sessions released).

The report counts requests (ok / failed), the streams that were in flight across a handover, and
per handover how long the core took to re-anchor (``reanchor_ms``, measured in the core) and how
long from the HandoverUe call until the first reply of the UE's next request, sent after the
handover, arrived (``handover_to_served_ms``; it includes the RPC, the UE's GetSession, waiting for
its request in flight to finish, and the new edge fetching the session from the core).
"""

from __future__ import annotations

import asyncio
import csv
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc

from netgpt.channels import DEFAULT_TIMEOUT_S, open_channel
from netgpt.errors import StartupError
from netgpt.tls import Transport
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import control_plane_pb2_grpc as cp_grpc
from netgpt.v1 import ran_pb2, ran_pb2_grpc
from netgpt.v1 import user_plane_pb2 as up_pb2
from netgpt.v1 import user_plane_pb2_grpc as up_grpc

EVENTS = ("attach", "handover", "detach")
MAX_TRACE_ROWS = 100_000
DEFAULT_PROMPT = "where can I get a coffee near here?"


@dataclass(frozen=True)
class TraceEvent:
    time_s: float
    ue_id: str
    cell_id: str
    event: str
    slice_id: str = ""
    five_qi: int = 0


def read_trace(path: Path) -> list[TraceEvent]:
    """The trace's events in time order (ties keep file order); StartupError naming the bad row."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise StartupError(f"trace {path}: {exc.strerror or exc}") from exc
    return parse_trace(text.splitlines(), str(path))


def parse_trace(lines: Iterable[str], name: str = "trace") -> list[TraceEvent]:
    reader = csv.DictReader(lines)
    missing = {"time", "ue", "cell", "event"} - set(reader.fieldnames or ())
    if missing:
        raise StartupError(f"{name}: header must name time,ue,cell,event (optional slice,five_qi); "
                           f"missing {', '.join(sorted(missing))}")
    events: list[TraceEvent] = []
    for row in reader:
        line = reader.line_num
        if len(events) >= MAX_TRACE_ROWS:
            raise StartupError(f"{name}: more than {MAX_TRACE_ROWS} events")
        try:
            time_s, five_qi = float(row["time"]), int(row.get("five_qi") or 0)
        except ValueError as exc:
            raise StartupError(f"{name} line {line}: time must be seconds and five_qi a number ({exc})") from exc
        event = (row["event"] or "").strip().lower()
        if event not in EVENTS or time_s < 0 or not row["ue"] or not row["cell"] and event != "detach":
            raise StartupError(f"{name} line {line}: need time >= 0, a ue, a cell and an event of "
                               f"{', '.join(EVENTS)}; got {dict(row)!r:.120}")
        events.append(TraceEvent(time_s, row["ue"].strip(), (row["cell"] or "").strip(), event,
                                 (row.get("slice") or "").strip(), five_qi))
    return sorted(events, key=lambda e: e.time_s)


@dataclass
class HandoverRecord:
    ue_id: str
    from_cell: str
    to_cell: str
    from_edge: str
    to_edge: str
    reanchor_ms: float  # the core's own time for re-anchoring the UE's sessions
    rpc_ms: float  # the HandoverUe call as the RAN saw it
    handover_to_served_ms: float | None = None  # until the first reply from the new edge (see the module doc)


@dataclass
class SimReport:
    events: int = 0
    requests_ok: int = 0
    requests_failed: int = 0
    streams_across_handover: int = 0  # in flight when their UE was handed over; finished where they started
    redirected: int = 0  # refused by the old edge before the UE re-read its session, then answered by the new one
    reestablished_sessions: int = 0  # sessions the UEs had to set up again (the goal: 0)
    handovers: list[HandoverRecord] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # the first few errors, for the report
    served_by: dict[str, list[str]] = field(default_factory=dict)  # per UE, the edges that answered, in order

    def summary(self) -> dict[str, object]:
        moved = [h for h in self.handovers if h.to_edge != h.from_edge]
        served = [h.handover_to_served_ms for h in self.handovers if h.handover_to_served_ms is not None]
        return {"events": self.events, "requests_ok": self.requests_ok, "requests_failed": self.requests_failed,
                "handovers": len(self.handovers), "edge_changes": len(moved),
                "streams_across_handover": self.streams_across_handover, "redirected": self.redirected,
                "reestablished_sessions": self.reestablished_sessions,
                "reanchor_ms": _stats([h.reanchor_ms for h in self.handovers]),
                "handover_rpc_ms": _stats([h.rpc_ms for h in self.handovers]),
                "handover_to_served_ms": _stats(served)}

    def as_json(self) -> dict[str, object]:
        return {"summary": self.summary(), "handovers": [asdict(h) for h in self.handovers],
                "failures": self.failures, "served_by": self.served_by}


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {"n": len(ordered), "p50": round(statistics.median(ordered), 3),
            "p90": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 3),
            "max": round(ordered[-1], 3), "mean": round(statistics.fmean(ordered), 3)}


@dataclass
class SimSettings:
    core: str
    prompt: str = DEFAULT_PROMPT
    max_new_tokens: int = 8
    route: up_pb2.RoutePreference = up_pb2.ROUTE_PREFERENCE_UNSPECIFIED
    speed: float = 1.0  # trace seconds per wall second
    pause_s: float = 0.0  # between one UE's requests
    request_timeout_s: float = 60.0
    ran_transport: Transport | None = None  # who reports RAN events (None: the process's client identity)
    ue_transport: Callable[[str], Transport | None] = lambda ue_id: None  # who each UE is


class _Moved(Exception):
    """The edge refused the request, before streaming anything, because the session moved away."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Channels:
    """One channel per (identity, address), closed together at the end."""

    def __init__(self) -> None:
        self._open: dict[tuple[int, str], grpc.aio.Channel] = {}

    def get(self, address: str, transport: Transport | None) -> grpc.aio.Channel:
        key = (id(transport), address)
        if key not in self._open:
            self._open[key] = open_channel(address, transport)
        return self._open[key]

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self._open.values()), return_exceptions=True)


@dataclass
class _Ue:
    ue_id: str
    session: cp_pb2.AiSession
    transport: Transport | None
    active: bool = True
    handovers_in_flight: int = 0  # handovers since the request in flight started
    waiting: list[tuple[HandoverRecord, float]] = field(default_factory=list)  # (handover, began) to time
    task: asyncio.Task[None] | None = None


class RanSimulator:
    def __init__(self, settings: SimSettings) -> None:
        self.settings = settings
        self.report = SimReport()
        self._channels = _Channels()
        self._ues: dict[str, _Ue] = {}
        self._ran = ran_pb2_grpc.RanServiceStub(self._channels.get(settings.core, settings.ran_transport))

    def _core(self, ue: _Ue | None, transport: Transport | None = None) -> cp_grpc.ControlPlaneServiceStub:
        return cp_grpc.ControlPlaneServiceStub(self._channels.get(self.settings.core,
                                                                  ue.transport if ue else transport))

    async def run(self, events: list[TraceEvent]) -> SimReport:
        started = time.monotonic()
        try:
            for event in events:
                delay = started + event.time_s / self.settings.speed - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await self.apply(event)
            for ue_id in list(self._ues):
                await self._detach(ue_id)
        finally:
            for ue in self._ues.values():
                if ue.task is not None:
                    ue.task.cancel()
            await self._channels.close()
        return self.report

    async def apply(self, event: TraceEvent) -> None:
        self.report.events += 1
        if event.event == "attach":
            await self._attach(event)
        elif event.event == "handover":
            await self._handover(event)
        else:
            await self._detach(event.ue_id)

    async def _attach(self, event: TraceEvent) -> None:
        await self._ran.AttachUe(ran_pb2.AttachUeRequest(ue_id=event.ue_id, cell_id=event.cell_id,
                                                         slice_id=event.slice_id, five_qi=event.five_qi),
                                 timeout=DEFAULT_TIMEOUT_S)
        known = self._ues.get(event.ue_id)
        if known is not None:  # a re-attach: the core re-anchored the session; the UE re-reads it
            await self._refresh(known)
            return
        transport = self.settings.ue_transport(event.ue_id)
        reply = await self._core(None, transport).EstablishSession(
            cp_pb2.EstablishSessionRequest(ue_id=event.ue_id, cell_id=event.cell_id), timeout=DEFAULT_TIMEOUT_S)
        ue = _Ue(event.ue_id, reply.session, transport)
        ue.task = asyncio.create_task(self._traffic(ue), name=f"ran-sim-{event.ue_id}")
        self._ues[event.ue_id] = ue

    async def _handover(self, event: TraceEvent) -> None:
        ue = self._ues.get(event.ue_id)
        began = time.perf_counter()
        reply = await self._ran.HandoverUe(ran_pb2.HandoverUeRequest(
            ue_id=event.ue_id, source_cell_id=ue.session.cell_id if ue else "", target_cell_id=event.cell_id),
            timeout=DEFAULT_TIMEOUT_S)
        rpc_ms = (time.perf_counter() - began) * 1000
        if ue is None:
            return
        moved = next((m for m in reply.reanchored if m.session_id == ue.session.session_id), None)
        record = HandoverRecord(event.ue_id, ue.session.cell_id, event.cell_id,
                                moved.from_edge_id if moved else ue.session.serving_edge.node_id,
                                moved.to_edge_id if moved else ue.session.serving_edge.node_id,
                                reply.reanchor_ms, rpc_ms)
        self.report.handovers.append(record)
        ue.handovers_in_flight += 1
        await self._refresh(ue)
        ue.waiting.append((record, began))  # the next request the UE starts goes to the new edge

    async def _refresh(self, ue: _Ue) -> None:
        """The UE re-reads its session: the serving edge its next request goes to."""
        reply = await self._core(ue).GetSession(cp_pb2.GetSessionRequest(session_id=ue.session.session_id),
                                                timeout=DEFAULT_TIMEOUT_S)
        ue.session = reply.session

    async def _detach(self, ue_id: str) -> None:
        ue = self._ues.pop(ue_id, None)
        if ue is not None:
            ue.active = False
            if ue.task is not None:
                await ue.task  # the request in flight finishes
        await self._ran.DetachUe(ran_pb2.DetachUeRequest(ue_id=ue_id), timeout=DEFAULT_TIMEOUT_S)

    async def _traffic(self, ue: _Ue) -> None:
        while ue.active:
            session = ue.session
            ue.handovers_in_flight = 0
            waiting, ue.waiting = ue.waiting, []
            answered = await self._ask(ue, session)
            if answered is not None:
                edge, first_reply = answered
                self.report.served_by.setdefault(ue.ue_id, []).append(edge)
                if ue.handovers_in_flight:
                    self.report.streams_across_handover += 1
                for record, began in waiting:
                    record.handover_to_served_ms = (first_reply - began) * 1000
            else:
                ue.waiting = waiting + ue.waiting  # the next answer counts
            if self.settings.pause_s:
                await asyncio.sleep(self.settings.pause_s)

    async def _ask(self, ue: _Ue, session: cp_pb2.AiSession) -> tuple[str, float] | None:
        """One request to the session's serving edge: (the edge that answered, when its first reply
        came, ``perf_counter``), or None when it failed. Refused by an edge that no longer serves the
        session's cell, it goes once more to the serving edge the UE reads from the core."""
        try:
            return await self._ask_edge(ue, session)
        except _Moved as moved:
            await self._refresh(ue)
            if ue.session.serving_edge.node_id == session.serving_edge.node_id:
                self._failed(moved.reason)
                return None
            self.report.redirected += 1
            try:
                return await self._ask_edge(ue, ue.session)
            except _Moved as again:
                self._failed(again.reason)
                return None

    async def _ask_edge(self, ue: _Ue, session: cp_pb2.AiSession) -> tuple[str, float] | None:
        request = up_pb2.GenerateRequest(session_id=session.session_id, kind=up_pb2.PROMPT_KIND_CONCISE,
                                         prompt=self.settings.prompt, route=self.settings.route,
                                         params=up_pb2.GenerationParams(max_new_tokens=self.settings.max_new_tokens))
        stub = up_grpc.UserPlaneServiceStub(self._channels.get(session.serving_edge.address, ue.transport))
        edge, finished, first_reply = "", False, 0.0
        try:
            async for event in stub.Generate(request, timeout=self.settings.request_timeout_s):
                first_reply = first_reply or time.perf_counter()
                if event.HasField("comprehensive_prompt"):
                    edge = event.comprehensive_prompt.edge_node_id
                finished = finished or event.HasField("summary")
        except grpc.aio.AioRpcError as exc:
            reason = f"{ue.ue_id} at {session.serving_edge.node_id}: {exc.code().name}: {exc.details()}"
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION and not first_reply:
                raise _Moved(reason) from exc
            self._failed(reason)
            return None
        if not finished:
            self._failed(f"{ue.ue_id} at {session.serving_edge.node_id}: stream ended without a summary")
            return None
        self.report.requests_ok += 1
        return edge or session.serving_edge.node_id, first_reply

    def _failed(self, reason: str) -> None:
        self.report.requests_failed += 1
        if len(self.report.failures) < 20:
            self.report.failures.append(reason[:300])


async def run_trace(events: list[TraceEvent], settings: SimSettings) -> SimReport:
    return await RanSimulator(settings).run(events)
