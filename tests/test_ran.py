"""RAN events and mobility: the RanService on the core, 5QI → QoS, handover re-anchoring across two
edges (a stream in flight finishes where it started), and ``netgpt ran-sim`` over a mobility trace."""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from pathlib import Path

import grpc
import pytest
from harness import NO_TASK_MODELS, start_cluster
from helpers import eventually, kinds
from slow_model import SlowModel
from throwaway_ca import identity, tls

from appkit.ran_sim import SimSettings, parse_trace, run_trace
from core.state import open_db
from cp.qos import TABLE, check_five_qi, netgpt_priority, qos_for
from cp.state_db import SqliteState
from edge_node.daemon import load_knowledge, start_edge
from netgpt.channels import open_channel
from netgpt.config import EdgeConfig
from netgpt.errors import InvalidArgument, StartupError
from netgpt.v1 import common_pb2, ran_pb2, ran_pb2_grpc
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import control_plane_pb2_grpc as cp_grpc
from netgpt.v1 import user_plane_pb2 as up_pb2
from netgpt.v1 import user_plane_pb2_grpc as up_grpc

EDGE_1_CELLS = ["cell-harbour-1", "cell-campus-2"]
EDGE_2_CELLS = ["cell-station-3"]
RAN = identity("ran", "ran-sim-1")


# --- 5QI table ---------------------------------------------------------------------------------


def test_five_qi_maps_to_priority_and_budget_in_order():
    assert qos_for(9) == common_pb2.QoS(priority=15, latency_budget_ms=300)  # the default bearer: lowest
    assert qos_for(69) == common_pb2.QoS(priority=1, latency_budget_ms=60)  # MC signalling, level 5: highest
    assert qos_for(82).latency_budget_ms == 10 and qos_for(0) == common_pb2.QoS()
    by_level = sorted(TABLE.values(), key=lambda row: row.priority_level)
    mapped = [netgpt_priority(row.priority_level) for row in by_level]
    assert mapped == sorted(mapped) and set(mapped) <= set(range(1, 16))
    for bad in (10, 128, 255):
        with pytest.raises(InvalidArgument, match="5QI"):
            check_five_qi(bad)


def test_trace_rows_are_checked():
    events = parse_trace(["time,ue,cell,event,five_qi", "1.5,ue-a,cell-x,handover,", "0,ue-a,cell-y,attach,9"])
    assert [(e.time_s, e.event, e.five_qi) for e in events] == [(0.0, "attach", 9), (1.5, "handover", 0)]
    with pytest.raises(StartupError, match="line 2"):
        parse_trace(["time,ue,cell,event", "1,ue-a,cell-x,teleport"])
    with pytest.raises(StartupError, match="missing event"):
        parse_trace(["time,ue,cell", "1,ue-a,cell-x"])


def test_sessions_of_a_ue_survive_the_schema_upgrade(tmp_path: Path):
    path = tmp_path / "core.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE sessions (session_id TEXT PRIMARY KEY, expires_at REAL, session BLOB NOT NULL)")
    old = cp_pb2.AiSession(session_id="sess-old", ue_id="ue-7", cell_id="cell-x")
    db.execute("INSERT INTO sessions VALUES (?, ?, ?)", ("sess-old", None, old.SerializeToString()))
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    state = SqliteState(open_db(path))
    try:
        state.put_session(cp_pb2.AiSession(session_id="sess-new", ue_id="ue-7"), 123.0)
        state.put_session(cp_pb2.AiSession(session_id="sess-other", ue_id="ue-8"), None)
        assert [s.session.session_id for s in state.sessions_of_ue("ue-7")] == ["sess-new", "sess-old"]
        assert state.sessions_of_ue("ue-7")[0].expires_at == 123.0
    finally:
        state.close()


# --- two edges on one core ----------------------------------------------------------------------


@pytest.fixture(scope="module")
async def two_edges(models):
    """Core + cloud + edge-1 (harbour, campus; a gate to hold its decoding; sessions cached 300 s, so only
    the core's SessionsMoved makes it re-read a moved one) + edge-2 (station)."""
    gpt2, llama = models
    slow = SlowModel(gpt2, 0.0)
    cluster = await start_cluster(slow, llama, heartbeat_interval_s=0.3,
                                  edge={"cells": EDGE_1_CELLS, "session_cache_s": 300.0, "intent_tokens": 0})
    deploy_dir = Path(tempfile.mkdtemp(prefix="netgpt-edge-2-"))
    cluster.scratch.append(deploy_dir)
    config = EdgeConfig(**{**tls("edge", "edge-2"), "node_id": "edge-2", "listen": "127.0.0.1:0",
                           "core": cluster.core.address, "cells": EDGE_2_CELLS, "profiles_db": ":memory:",
                           "deploy_dir": str(deploy_dir), "intent_tokens": 0,
                           **NO_TASK_MODELS})
    edge_2 = await start_edge(config, gpt2, load_knowledge(config))  # type: ignore[arg-type]
    await eventually(lambda: any(s.info.node_id == "edge-2" and s.health == common_pb2.NODE_HEALTH_SERVING
                                 for s in cluster.core.registry.statuses(common_pb2.NODE_ROLE_EDGE)),
                     "edge-2 registered")
    yield cluster, edge_2, slow
    await edge_2.stop(1.0)
    await cluster.stop()


async def _ran(core: str, call: str, request, who=RAN):
    async with open_channel(core, who) as channel:
        return await getattr(ran_pb2_grpc.RanServiceStub(channel), call)(request, timeout=10)


async def _session(core: str, ue_id: str, session_id: str = "", cell_id: str = "") -> cp_pb2.AiSession:
    """As the UE: establish (cell given) or re-read its session."""
    async with open_channel(core, identity("ue", ue_id)) as channel:
        stub = cp_grpc.ControlPlaneServiceStub(channel)
        if session_id:
            return (await stub.GetSession(cp_pb2.GetSessionRequest(session_id=session_id), timeout=10)).session
        reply = await stub.EstablishSession(cp_pb2.EstablishSessionRequest(ue_id=ue_id, cell_id=cell_id), timeout=10)
        return reply.session


def _ask(session: cp_pb2.AiSession) -> up_pb2.GenerateRequest:
    return up_pb2.GenerateRequest(session_id=session.session_id, kind=up_pb2.PROMPT_KIND_CONCISE,
                                  prompt="where can I get a coffee?", route=up_pb2.ROUTE_PREFERENCE_EDGE,
                                  params=up_pb2.GenerationParams(max_new_tokens=6))


async def _refused(address: str, ue_id: str, request: up_pb2.GenerateRequest,
                   timeout_s: float = 15.0) -> grpc.aio.AioRpcError:
    """The error the edge at ``address`` answers ``request`` with, once it stops answering it (asked
    every 0.1 s, for at most ``timeout_s``)."""
    async def refusal() -> grpc.aio.AioRpcError | None:
        try:
            await _generate(address, ue_id, request)
        except grpc.aio.AioRpcError as exc:
            return exc
        return None

    return await eventually(refusal, f"{address} to stop answering", timeout_s, poll_s=0.1)


async def _generate(address: str, ue_id: str, request: up_pb2.GenerateRequest) -> list[up_pb2.GenerateResponse]:
    async with open_channel(address, identity("ue", ue_id)) as channel:
        return [e async for e in up_grpc.UserPlaneServiceStub(channel).Generate(request, timeout=60)]


def _answered_by(events: list[up_pb2.GenerateResponse]) -> str:
    return next(e.comprehensive_prompt.edge_node_id for e in events if e.HasField("comprehensive_prompt"))


async def test_attach_gives_sessions_the_qos_of_the_5qi_and_the_ran_role_is_checked(two_edges):
    cluster, _, _ = two_edges
    core = cluster.core.address
    reply = await _ran(core, "AttachUe", ran_pb2.AttachUeRequest(ue_id="ue-qos", cell_id="cell-harbour-1",
                                                                 slice_id="1-000001", five_qi=80))
    assert reply.ue.qos == qos_for(80)
    session = await _session(core, "ue-qos", cell_id="cell-harbour-1")
    assert session.qos == common_pb2.QoS(priority=netgpt_priority(68), latency_budget_ms=10)
    assert session.slice_id == "1-000001"

    with pytest.raises(grpc.aio.AioRpcError) as denied:  # a UE cannot report RAN events
        await _ran(core, "HandoverUe", ran_pb2.HandoverUeRequest(ue_id="ue-qos", target_cell_id="cell-station-3"),
                   who=identity("ue", "ue-qos"))
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    for request, code in [
        (ran_pb2.AttachUeRequest(ue_id="ue-qos", cell_id="cell-harbour-1", five_qi=200), "INVALID_ARGUMENT"),
        (ran_pb2.HandoverUeRequest(ue_id="ue-qos", target_cell_id="cell-nowhere"), "NOT_FOUND"),
        (ran_pb2.HandoverUeRequest(ue_id="ue-qos", source_cell_id="cell-campus-2",
                                   target_cell_id="cell-station-3"), "FAILED_PRECONDITION"),
    ]:
        call = "AttachUe" if isinstance(request, ran_pb2.AttachUeRequest) else "HandoverUe"
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _ran(core, call, request)
        assert refused.value.code().name == code, refused.value.details()
    assert (await _session(core, "ue-qos", session.session_id)).serving_edge.node_id == "edge-1"  # nothing moved

    await _ran(core, "ReportCellLoad", ran_pb2.ReportCellLoadRequest(
        cells=[ran_pb2.CellLoad(cell_id="cell-harbour-1", prb_utilization=0.4, connected_ues=12)]))
    cells = {c.cell_id: c for c in (await _ran(core, "ListCells", ran_pb2.ListCellsRequest())).cells}
    assert cells["cell-harbour-1"].load.prb_utilization == pytest.approx(0.4)
    assert list(cells["cell-station-3"].edge_ids) == ["edge-2"] and cells["cell-harbour-1"].attached_ues >= 1
    with pytest.raises(grpc.aio.AioRpcError) as bad_load:
        await _ran(core, "ReportCellLoad", ran_pb2.ReportCellLoadRequest(
            cells=[ran_pb2.CellLoad(cell_id="cell-harbour-1", prb_utilization=1.5)]))
    assert bad_load.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    detached = await _ran(core, "DetachUe", ran_pb2.DetachUeRequest(ue_id="ue-qos"))
    assert list(detached.released_session_ids) == [session.session_id]


async def test_handover_reanchors_the_session_and_a_stream_in_flight_finishes_where_it_started(two_edges):
    cluster, edge_2, slow = two_edges
    core = cluster.core.address
    await _ran(core, "AttachUe", ran_pb2.AttachUeRequest(ue_id="ue-move", cell_id="cell-harbour-1", five_qi=9))
    session = await _session(core, "ue-move", cell_id="cell-harbour-1")
    assert session.serving_edge.node_id == "edge-1"

    slow.gate.close()  # edge-1 holds its decoding: the first request is in flight across the handover
    try:
        in_flight = asyncio.create_task(_generate(session.serving_edge.address, "ue-move", _ask(session)))
        await eventually(lambda: slow.gate.waiting > 0, "a request decoding at edge-1")
        # within edge-1's cells: same edge, new cell
        local = await _ran(core, "HandoverUe", ran_pb2.HandoverUeRequest(
            ue_id="ue-move", source_cell_id="cell-harbour-1", target_cell_id="cell-campus-2"))
        assert [(m.from_edge_id, m.to_edge_id) for m in local.reanchored] == [("edge-1", "edge-1")]
        moved = await _ran(core, "HandoverUe", ran_pb2.HandoverUeRequest(
            ue_id="ue-move", source_cell_id="cell-campus-2", target_cell_id="cell-station-3"))
    finally:
        slow.gate.open()
    assert [(m.session_id, m.from_edge_id, m.to_edge_id) for m in moved.reanchored] == \
        [(session.session_id, "edge-1", "edge-2")]
    assert moved.reanchor_ms >= 0

    events = await in_flight
    assert kinds(events)[-1] == "summary" and _answered_by(events) == "edge-1"

    after = await _session(core, "ue-move", session.session_id)  # the UE re-reads; nothing re-established
    assert (after.session_id, after.ai_flow_id) == (session.session_id, session.ai_flow_id)
    assert (after.cell_id, after.serving_edge.node_id, after.qos) == ("cell-station-3", "edge-2", session.qos)
    events = await _generate(edge_2.address, "ue-move", _ask(after))
    assert kinds(events)[-1] == "summary" and _answered_by(events) == "edge-2"

    # edge-1 cached the session for 300 s; the core's SessionsMoved (its next heartbeat, 0.3 s) makes it
    # look the session up afresh, and a request that still reaches it is redirected to edge-2
    refused = await _refused(session.serving_edge.address, "ue-move", _ask(after))
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION and "edge-2" in (refused.details() or "")
    await _ran(core, "DetachUe", ran_pb2.DetachUeRequest(ue_id="ue-move"))


TRACE = """time,ue,cell,event,slice,five_qi
0.0,ue-a,cell-harbour-1,attach,1-000001,9
0.0,ue-b,cell-station-3,attach,1-000001,7
0.1,ue-c,cell-campus-2,attach,,80
0.6,ue-a,cell-station-3,handover,,
0.8,ue-b,cell-harbour-1,handover,,
1.0,ue-c,cell-harbour-1,handover,,
1.4,ue-a,cell-campus-2,handover,,
1.6,ue-b,cell-station-3,handover,,
1.8,ue-c,cell-station-3,handover,,
2.2,ue-a,cell-station-3,handover,,
2.6,ue-c,,detach,,
3.0,ue-a,,detach,,
3.0,ue-b,,detach,,
"""


async def test_ran_sim_replays_a_trace_with_no_failed_requests(two_edges):
    cluster, _, _ = two_edges
    settings = SimSettings(core=cluster.core.address, max_new_tokens=4, route=up_pb2.ROUTE_PREFERENCE_EDGE,
                           ran_transport=RAN, ue_transport=lambda ue_id: identity("ue", ue_id))
    report = await run_trace(parse_trace(TRACE.splitlines()), settings)
    summary = report.summary()
    assert report.requests_failed == 0, report.failures
    assert summary["handovers"] == 7 and report.reestablished_sessions == 0
    assert summary["edge_changes"] == 6  # ue-c's campus → harbour stays on edge-1
    assert report.requests_ok >= 3 and summary["redirected"] <= summary["edge_changes"]
    assert {"edge-1", "edge-2"} <= set(report.served_by["ue-a"])  # its one session was answered at both edges
    assert all(h.reanchor_ms >= 0 for h in report.handovers)
    remaining = await _ran(cluster.core.address, "ListCells", ran_pb2.ListCellsRequest())
    assert sum(c.attached_ues for c in remaining.cells) == 0
