"""The core's durable state: workflows, routing policy and AI sessions survive a restart (even kill -9),
sessions expire and are swept, and a restarted core hands its policy to the edges that re-register."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from helpers import eventually
from throwaway_ca import as_node, tls

from core.daemon import start_core
from core.state import STATE_FILE, open_db
from cp.agent import ControlPlaneAgent
from cp.placement import WorkflowTable
from cp.policy import PolicyBook
from cp.registry import NodeRegistry
from cp.servicer import ControlPlaneServicer
from cp.sessions import SessionTable, sweep_expired
from cp.state_db import CoreState, MemoryState, SqliteState, SqlState, StoredWorkflow
from cp.workflows import from_mapping, parse_toml
from netgpt.channels import open_channel
from netgpt.config import CoreConfig
from netgpt.errors import NotFound
from netgpt.server import Service, start_server
from netgpt.tls import PLAINTEXT
from netgpt.v1 import common_pb2
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import control_plane_pb2_grpc as cp_grpc
from netgpt.v1 import user_plane_pb2 as up_pb2
from netgpt.v1 import workflow_pb2 as wf_pb2
from netgpt.v1 import workflow_pb2_grpc as wf_grpc

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "workflow.toml"
EDGE = common_pb2.NodeInfo(node_id="edge-s", role=common_pb2.NODE_ROLE_EDGE, address="127.0.0.1:1",
                           cell_ids=["cell-1"])
CLOUD = common_pb2.NodeInfo(node_id="cloud-s", role=common_pb2.NODE_ROLE_CLOUD, address="127.0.0.1:2")
CHAT, LOOKUP = up_pb2.TASK_CLASS_CHAT, up_pb2.TASK_CLASS_LOOKUP


class Clock:
    """An injectable wall clock: tests move time instead of sleeping."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def serving_registry(*nodes: common_pb2.NodeInfo) -> NodeRegistry:
    registry = NodeRegistry(clock=lambda: 0.0)  # frozen: the nodes never go stale during a test
    for node in nodes:
        registry.register(node)
    return registry


@pytest.fixture
def make_state(core_db) -> Callable[[], CoreState]:
    """Opens the state (memory, SQLite, PostgreSQL); every call opens the same database again, as a restarted
    core would."""
    memory = MemoryState()

    def make() -> CoreState:
        db = core_db()
        return memory if db is None else SqlState(db)

    return make


# --- unit: the state itself ---------------------------------------------------------------------


def test_workflows_policies_and_sessions_round_trip(make_state):
    chat = parse_toml(EXAMPLE.read_text())
    in_cell = from_mapping({"name": "in-cell", "latency_budget_ms": 500, "priority": 3, "cell_id": "cell-1",
                            "steps": [{"id": "b", "function": "generate_edge", "after": ["a"]},
                                      {"id": "a", "function": "personalise"}]})
    state = make_state()
    state.put_workflow(chat, 10.5)
    state.put_workflow(in_cell, 11.0)
    state.put_workflow(in_cell, 12.0)  # re-applied: replaces
    state.put_workflow(from_mapping({"name": "gone", "latency_budget_ms": 9, "priority": 1,
                                     "steps": [{"id": "x", "function": "route"}]}), 1.0)
    state.delete_workflow("gone")
    for_all = cp_pb2.RoutingPolicy(edge_tasks=[LOOKUP, CHAT], confidence_threshold=-2.5, max_cloud_queue=4)
    for_one = cp_pb2.RoutingPolicy(edge_tasks=[LOOKUP], confidence_probe_tokens=6)
    state.replace_policies({"": for_all, "edge-s": for_one})
    session = cp_pb2.AiSession(session_id="sess-1", ai_flow_id="flow-1", ue_id="ue-1", cell_id="cell-1",
                               qos=common_pb2.QoS(priority=2, latency_budget_ms=800), serving_edge=EDGE,
                               serving_cloud=CLOUD)
    session.created_at.FromSeconds(1_700_000_000)
    state.put_session(session, 1_700_003_600.0)
    state.put_session(cp_pb2.AiSession(session_id="sess-forever", ue_id="ue-2"), None)
    state.put_session(cp_pb2.AiSession(session_id="sess-released"), 5.0)
    assert state.delete_session("sess-released") and not state.delete_session("sess-released")

    again = make_state()  # the same file opened again (SQLite), or the same object (memory)
    assert again.workflows() == [StoredWorkflow(in_cell, 12.0), StoredWorkflow(chat, 10.5)]
    assert [s.id for s in again.workflows()[0].workflow.steps] == ["a", "b"]
    assert again.policies() == {"": for_all, "edge-s": for_one}
    stored = again.get_session("sess-1")
    assert stored is not None and stored.session == session and stored.expires_at == 1_700_003_600.0
    forever = again.get_session("sess-forever")
    assert forever is not None and forever.expires_at is None and forever.session.ue_id == "ue-2"
    assert again.get_session("sess-released") is None and again.session_count() == 2
    again.set_session_expiry("sess-1", 1_700_007_200.0)
    again.replace_policies({"": for_one})
    third = make_state()
    assert third.get_session("sess-1").expires_at == 1_700_007_200.0
    assert third.policies() == {"": for_one}


def test_sweep_deletes_only_expired_sessions_in_bounded_batches(make_state):
    state = make_state()
    for i in range(10):
        state.put_session(cp_pb2.AiSession(session_id=f"s{i}"), float(i))
    state.put_session(cp_pb2.AiSession(session_id="never"), None)
    state.set_session_expiry("s0", 100.0)  # extended: no longer due
    assert state.sweep_sessions(5.0, limit=3) == 3  # s1..s5 are due; at most 3 go
    assert state.sweep_sessions(5.0, limit=100) == 2
    assert state.sweep_sessions(5.0, limit=100) == 0
    left = [s for s in ["never", *(f"s{i}" for i in range(10))] if state.get_session(s) is not None]
    assert left == ["never", "s0", "s6", "s7", "s8", "s9"]
    assert state.sweep_sessions(1e12, limit=100) == 5 and state.session_count() == 1


def test_a_newer_schema_is_refused(tmp_path: Path):
    import sqlite3

    from netgpt.errors import StartupError

    db = sqlite3.connect(tmp_path / "newer.sqlite")
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(StartupError, match="schema version 99"):
        open_db(tmp_path / "newer.sqlite")
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(StartupError, match="junk.sqlite"):
        open_db(tmp_path / "junk.sqlite")


# --- unit: sessions expire --------------------------------------------------------------------


def establish(table: SessionTable, ue_id: str = "ue-1") -> cp_pb2.AiSession:
    return table.establish(cp_pb2.EstablishSessionRequest(ue_id=ue_id, cell_id="cell-1"))


async def test_sessions_set_up_at_once_off_the_event_loop_are_all_kept_and_found(make_state):
    state = make_state()  # the databases' calls on worker threads (as the core does on PostgreSQL), memory inline
    table = SessionTable(serving_registry(EDGE, CLOUD), state, ttl_s=100, shared=not isinstance(state, MemoryState))
    sessions = await asyncio.gather(*(table.establish_async(cp_pb2.EstablishSessionRequest(
        ue_id=f"ue-{k}", cell_id="cell-1")) for k in range(40)))
    assert len({s.session_id for s in sessions}) == 40 and len(table) == 40
    assert all(s.serving_edge.node_id == "edge-s" and s.serving_cloud.node_id == "cloud-s" for s in sessions)
    assert await asyncio.gather(*(table.get_async(s.session_id) for s in sessions)) == sessions
    await table.release_async(sessions[0].session_id)
    with pytest.raises(NotFound, match="unknown"):
        await table.get_async(sessions[0].session_id)
    with pytest.raises(NotFound, match="unknown"):  # a user mistake comes back from the thread as itself
        await table.release_async("sess-never")
    assert len(table) == 39


def test_a_session_unused_for_its_ttl_expires_and_a_lookup_keeps_it_alive(make_state):
    clock = Clock()
    table = SessionTable(serving_registry(EDGE, CLOUD), make_state(), ttl_s=100, wall=clock)
    session = establish(table)
    clock.now += 60
    assert table.get(session.session_id) == session  # used: alive for another 100 s from here
    clock.now += 90  # 150 s after establishment, 90 s after the last use
    assert table.get(session.session_id) == session
    clock.now += 100
    with pytest.raises(NotFound, match="expired"):
        table.get(session.session_id)
    with pytest.raises(NotFound, match="unknown"):  # and it is gone
        table.release(session.session_id)
    assert len(table) == 0

    forever = SessionTable(serving_registry(EDGE), MemoryState(), ttl_s=0, wall=clock)
    kept = establish(forever)
    clock.now += 10 * 365 * 86400
    assert forever.sweep() == 0 and forever.get(kept.session_id) == kept


async def test_twenty_thousand_unreleased_sessions_do_not_grow_the_core(tmp_path: Path):
    clock = Clock()
    state = SqliteState(open_db(tmp_path / STATE_FILE))
    try:
        table = SessionTable(serving_registry(EDGE), state, ttl_s=10, wall=clock)
        most = 0
        for i in range(20_000):  # one new session every 10 ms of (fake) time, none released
            establish(table, f"ue-{i}")
            clock.now += 0.01
            if i % 500 == 0:
                most = max(most, len(table))
        # at any time about ttl / 10 ms = 1000 sessions are alive; expired ones went with new ones
        assert 900 <= most <= 1100, most
        clock.now += 11  # nobody comes back: every session expires
        assert await sweep_expired(table) >= 900
        assert len(table) == 0
        reopened = SqliteState(open_db(tmp_path / STATE_FILE))
        assert reopened.session_count() == 0
        reopened.close()
    finally:
        state.close()


async def test_the_sweep_alone_empties_sessions_established_at_once(make_state):
    clock = Clock()
    table = SessionTable(serving_registry(EDGE), make_state(), ttl_s=5, wall=clock)
    for i in range(2500):  # none has expired yet, so establishing removes nothing
        establish(table, f"ue-{i}")
    assert len(table) == 2500
    clock.now += 6
    assert await sweep_expired(table) == 2500  # more than one batch
    assert len(table) == 0


# --- unit: the policy and workflows come back -------------------------------------------------


def test_a_restored_policy_reaches_edges_as_they_register(make_state):
    for_all = cp_pb2.RoutingPolicy(edge_tasks=[LOOKUP, CHAT])
    for_edge_b = cp_pb2.RoutingPolicy(edge_tasks=[LOOKUP], max_cloud_queue=2)
    edge_b = common_pb2.NodeInfo(node_id="edge-b", role=common_pb2.NODE_ROLE_EDGE, address="h:3", cell_ids=["c"])
    registry = serving_registry(EDGE, edge_b, CLOUD)
    book = PolicyBook(registry, make_state())
    assert book.set(for_all, []) == ["edge-b", "edge-s"]
    assert book.set(for_edge_b, ["edge-b"]) == ["edge-b"]

    restarted = serving_registry()  # a new core: nobody registered yet
    book = PolicyBook(restarted, make_state())
    assert book.for_all_edges == for_all
    for node in (EDGE, edge_b, CLOUD):
        restarted.register(node)
        book.on_register(node.node_id)

    def policies(node_id: str) -> list[cp_pb2.RoutingPolicy]:
        commands = restarted.heartbeat(node_id, common_pb2.NodeLoad())
        return [c.routing_policy for c in commands if c.HasField("routing_policy")]

    assert policies("edge-s") == [for_all]
    assert policies("edge-b") == [for_edge_b]
    assert policies("cloud-s") == []
    book.set(for_all, [])  # one for all edges replaces the per-edge ones
    assert PolicyBook(restarted, make_state()).for_edge("edge-b") == for_all


def test_restored_workflows_are_placed_once_their_nodes_are_back(make_state):
    clock = Clock()
    table = WorkflowTable(serving_registry(EDGE, CLOUD), wall=clock, state=make_state())
    applied = table.apply(parse_toml(EXAMPLE.read_text()))
    clock.now += 30

    registry = serving_registry()
    restored = WorkflowTable(registry, wall=clock, state=make_state())
    assert [w.workflow for w in restored.list()] == [applied.workflow]
    assert restored.get("personalised-chat").placement is None  # no node has registered again yet
    assert "none is serving" in restored.get("personalised-chat").error
    registry.register(EDGE)
    registry.register(CLOUD)
    again = restored.get("personalised-chat")
    assert again.placement == applied.placement and again.error == ""
    assert again.applied_at == applied.applied_at
    restored.delete("personalised-chat")
    assert WorkflowTable(registry, wall=clock, state=make_state()).list() == []


def test_replicas_hand_out_the_policy_and_workflows_set_at_another(make_state):
    """Core replicas share the state: a policy or workflow set at one is what the other reports and hands to
    an edge that moves to it, not what it read when it started."""
    first, second = make_state(), make_state()
    at_a, at_b = serving_registry(EDGE, CLOUD), serving_registry(EDGE, CLOUD)
    book_a, book_b = PolicyBook(at_a, first, shared=True), PolicyBook(at_b, second, shared=True)
    assert book_b.for_all_edges is None
    book_a.set(cp_pb2.RoutingPolicy(edge_tasks=[LOOKUP, CHAT], max_cloud_queue=7), [])
    book_b.on_register("edge-s")  # the edge moved to the other replica
    handed = [c.routing_policy for c in at_b.heartbeat("edge-s", common_pb2.NodeLoad()) if c.HasField("routing_policy")]
    assert [p.max_cloud_queue for p in handed] == [7]

    clock = Clock()
    table_a = WorkflowTable(at_a, wall=clock, state=first, shared=True)
    table_b = WorkflowTable(at_b, wall=clock, state=second, shared=True)
    assert table_b.list() == []
    applied = table_a.apply(parse_toml(EXAMPLE.read_text()))
    assert [w.workflow for w in table_b.list()] == [applied.workflow]
    assert table_b.get("personalised-chat").placement == applied.placement
    table_b.delete("personalised-chat")
    assert len(table_a) == 0


# --- in process: a real core, stopped and started again on the same store -----------------------


class Node:
    """A node's control-plane agent that records the routing policies the core sends it."""

    def __init__(self, core_address: str, info: common_pb2.NodeInfo) -> None:
        self.policies: list[cp_pb2.RoutingPolicy] = []
        self.agent = ControlPlaneAgent(core_address, cp_pb2.RegisterNodeRequest(node=info).node,
                                       common_pb2.NodeLoad, self._on_command, as_node(info))

    def _on_command(self, command: cp_pb2.NodeCommand) -> None:
        if command.HasField("routing_policy"):
            self.policies.append(command.routing_policy)


def without_placed_at(workflow: wf_pb2.Workflow) -> wf_pb2.Workflow:
    copy = wf_pb2.Workflow()
    copy.CopyFrom(workflow)
    copy.ClearField("placed_at")  # when the restarted core placed it again
    return copy


async def test_workflows_policy_and_sessions_survive_a_core_restart(tmp_path: Path):
    config = CoreConfig(**tls("core", "core"), listen="127.0.0.1:0", heartbeat_interval_s=0.2,
                        store_dir=str(tmp_path / "store"))
    core = await start_core(config)
    address = core.address
    edge, cloud = Node(address, EDGE), Node(address, CLOUD)
    policy = cp_pb2.RoutingPolicy(edge_tasks=[LOOKUP, CHAT], confidence_threshold=-3.0, max_cloud_queue=5)
    try:
        edge.agent.start()
        cloud.agent.start()
        await eventually(lambda: edge.agent.registrations == 1 and cloud.agent.registrations == 1, "registration")
        async with open_channel(address) as channel:
            cp, wf = cp_grpc.ControlPlaneServiceStub(channel), wf_grpc.WorkflowServiceStub(channel)
            await wf.ApplyWorkflow(wf_pb2.ApplyWorkflowRequest(spec_toml=EXAMPLE.read_text()), timeout=5)
            await cp.SetRoutingPolicy(cp_pb2.SetRoutingPolicyRequest(policy=policy), timeout=5)
            session = (await cp.EstablishSession(cp_pb2.EstablishSessionRequest(ue_id="ue-7", cell_id="cell-1"),
                                                 timeout=5)).session
            before = (await wf.GetWorkflow(wf_pb2.GetWorkflowRequest(name="personalised-chat"), timeout=5)).workflow
            listed = (await wf.ListWorkflows(wf_pb2.ListWorkflowsRequest(), timeout=5)).workflows
        assert before.placement and not before.placement_error and list(listed) == [before]
        await eventually(lambda: edge.policies == [policy], "the policy at the edge")
        await core.stop(0)

        core = await start_core(replace(config, listen=address))
        await eventually(lambda: edge.agent.registrations >= 2 and cloud.agent.registrations >= 2,
                         "re-registration")
        await eventually(lambda: len(edge.policies) >= 2 and all(p == policy for p in edge.policies),
                         "the restored policy at the re-registered edge")
        assert cloud.policies == []
        async with open_channel(address) as channel:
            cp, wf = cp_grpc.ControlPlaneServiceStub(channel), wf_grpc.WorkflowServiceStub(channel)
            assert (await cp.GetRoutingPolicy(cp_pb2.GetRoutingPolicyRequest(), timeout=5)).policy == policy
            assert (await cp.GetSession(cp_pb2.GetSessionRequest(session_id=session.session_id),
                                        timeout=5)).session == session
            after = (await wf.GetWorkflow(wf_pb2.GetWorkflowRequest(name="personalised-chat"), timeout=5)).workflow
            listed = (await wf.ListWorkflows(wf_pb2.ListWorkflowsRequest(), timeout=5)).workflows
        assert without_placed_at(after) == without_placed_at(before)
        assert [without_placed_at(w) for w in listed] == [without_placed_at(before)]
        assert (tmp_path / "store" / STATE_FILE).is_file()
    finally:
        await edge.agent.stop()
        await cloud.agent.stop()
        await core.stop(0)


async def test_an_expired_session_is_not_found_through_the_control_plane(tmp_path: Path):
    clock = Clock()
    registry = serving_registry(EDGE)
    state = SqliteState(open_db(tmp_path / STATE_FILE))
    sessions = SessionTable(registry, state, ttl_s=30, wall=clock)
    server = await start_server("127.0.0.1:0", [
        Service("netgpt.v1.ControlPlaneService", ControlPlaneServicer(registry, sessions, PolicyBook(registry, state)),
                cp_grpc.add_ControlPlaneServiceServicer_to_server)])
    try:
        async with open_channel(server.address, PLAINTEXT) as channel:
            stub = cp_grpc.ControlPlaneServiceStub(channel)
            session = (await stub.EstablishSession(cp_pb2.EstablishSessionRequest(ue_id="u", cell_id="cell-1"),
                                                   timeout=5)).session
            clock.now += 31
            for needle in ("expired", "unknown"):  # first seen expired (and deleted), then unknown
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.GetSession(cp_pb2.GetSessionRequest(session_id=session.session_id), timeout=5)
                assert err.value.code() == grpc.StatusCode.NOT_FOUND and needle in err.value.details()
    finally:
        await server.stop(0)
        state.close()


async def test_a_bad_ttl_or_state_file_stops_the_core_before_it_serves(tmp_path: Path):
    from netgpt.errors import StartupError

    with pytest.raises(StartupError, match="session_ttl_s"):
        await start_core(CoreConfig(**tls("core", "core"), listen="127.0.0.1:0", store_dir=str(tmp_path),
                                    session_ttl_s=-1))
    (tmp_path / "bad.sqlite").write_bytes(b"\x00garbage" * 512)
    with pytest.raises(StartupError, match="bad.sqlite"):
        await start_core(CoreConfig(**tls("core", "core"), listen="127.0.0.1:0", store_dir=str(tmp_path),
                                    state_db=str(tmp_path / "bad.sqlite")))
    memory = await start_core(CoreConfig(**tls("core", "core"), listen="127.0.0.1:0", store_dir=str(tmp_path / "s"),
                                    state_db=":memory:"))
    await memory.stop(0)
    assert not (tmp_path / "s" / STATE_FILE).exists()


# --- end to end: daemons, kill -9 the core, start it again ---------------------------------------


@pytest.mark.e2e
def test_kill_9_the_core_and_state_comes_back(tiny, tmp_path: Path):
    from daemons import Daemon, cli, kill_all, node_daemons

    store = str(tmp_path / "store")
    core = Daemon("core", "--listen", "127.0.0.1:0", "--heartbeat-interval-s", "0.3", "--store-dir", store)
    core_address = core.address
    cloud, edge = node_daemons(core_address, "k", "cell-harbour-1")
    daemons = [core, cloud, edge]

    def ok(*args: str) -> str:
        result = cli(*args, "--core", core_address)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result.stdout

    def policy_events() -> int:
        return sum(1 for e in list(edge.events) if e.get("event") == "edge.policy")

    def ask_chat() -> str:
        return ok("ask", "--cell", "cell-harbour-1", "--task", "chat", "--max-new-tokens", "4",
                  "Where can I eat seafood?")

    try:
        edge.wait_for("edge.peers", where=lambda item: "cloud-k" in item["clouds"])
        assert "terminated at cloud: ROUTE_REASON_CLOUD_FORWARDED" in ask_chat()  # the edge's own config
        ok("workflow", "apply", str(EXAMPLE))
        assert "edge-k" in ok("policy", "set", "--edge-tasks", "lookup,chat", "--max-cloud-queue", "7")
        edge.wait_for("edge.policy")
        workflow_before, policy_before = ok("workflow", "show"), ok("policy", "show")
        assert "cloud-k" in workflow_before and "edge-k" in workflow_before
        assert "chat" in policy_before and "max_cloud_queue=7" in policy_before
        assert "terminated at edge: ROUTE_REASON_EDGE_CAPABLE" in ask_chat()
        session = asyncio.run(establish_at(core_address))

        core.proc.kill()  # kill -9: no drain, no goodbye
        core.proc.wait(timeout=30)
        applied_before_restart = policy_events()
        core = daemons[0] = Daemon("core", "--listen", core_address, "--heartbeat-interval-s", "0.3",
                                   "--store-dir", store)
        core.wait_for("server.started")

        # placed again once both nodes are back
        asyncio.run(eventually(lambda: ok("workflow", "show") == workflow_before,
                               lambda: f"`workflow show` as before the restart; now:\n{ok('workflow', 'show')}",
                               timeout_s=30, poll_s=0.1))
        assert ok("policy", "show") == policy_before
        # handed over again on re-registration
        asyncio.run(eventually(lambda: policy_events() > applied_before_restart,
                               lambda: f"the edge to apply the restored policy; its last events: {edge.events[-3:]}",
                               timeout_s=30, poll_s=0.1))
        assert "terminated at edge: ROUTE_REASON_EDGE_CAPABLE" in ask_chat()

        summary = asyncio.run(generate_with_workflow(core_address, edge.address, session))
        assert summary.routing_inputs["workflow"] == "personalised-chat", summary
        assert summary.text
    finally:
        kill_all(daemons)


async def establish_at(core_address: str) -> cp_pb2.AiSession:
    async with open_channel(core_address) as channel:
        request = cp_pb2.EstablishSessionRequest(ue_id="ue-k", cell_id="cell-harbour-1")
        return (await cp_grpc.ControlPlaneServiceStub(channel).EstablishSession(request, timeout=5)).session


async def generate_with_workflow(core_address: str, edge_address: str,
                                 session: cp_pb2.AiSession) -> up_pb2.GenerationSummary:
    """A session established before the restart, looked up again, and a request naming the restored workflow."""
    from helpers import concise, generate

    async with open_channel(core_address) as channel:
        stub = cp_grpc.ControlPlaneServiceStub(channel)
        assert (await stub.GetSession(cp_pb2.GetSessionRequest(session_id=session.session_id), timeout=5)).session \
            == session
    events = await generate(edge_address, concise(session, "Where can I eat seafood?", max_new_tokens=4,
                                                  workflow="personalised-chat"))
    assert events and events[-1].HasField("summary"), events[-3:]
    return events[-1].summary
