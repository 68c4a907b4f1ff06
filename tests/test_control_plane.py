"""Control plane through a real core server on loopback: registration, heartbeats, sessions, restarts."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from helpers import eventually, register_as_node
from throwaway_ca import as_node, tls

from core.daemon import start_core
from cp.agent import ControlPlaneAgent
from netgpt.channels import open_channel
from netgpt.config import CoreConfig
from netgpt.v1 import common_pb2
from netgpt.v1 import compute_plane_pb2 as cmp_pb2
from netgpt.v1 import compute_plane_pb2_grpc as cmp_grpc
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import control_plane_pb2_grpc as cp_grpc

EDGE = common_pb2.NodeInfo(node_id="edge-a", role=common_pb2.NODE_ROLE_EDGE, address="127.0.0.1:1",
                           cell_ids=["cell-1", "cell-2"],
                           capabilities=common_pb2.Capabilities(
                               models=[common_pb2.ModelRef(name="gpt2", version="v1")]))
CLOUD = common_pb2.NodeInfo(node_id="cloud-a", role=common_pb2.NODE_ROLE_CLOUD, address="127.0.0.1:2")


@pytest.fixture
def stub(core_channel):
    return cp_grpc.ControlPlaneServiceStub(core_channel)


async def test_register_list_and_session_lifecycle(core, stub):
    await register_as_node(core.address, EDGE)
    await register_as_node(core.address, CLOUD)
    nodes = (await stub.ListNodes(cp_pb2.ListNodesRequest(), timeout=5)).nodes
    assert [n.info.node_id for n in nodes] == ["cloud-a", "edge-a"]
    assert all(n.health == common_pb2.NODE_HEALTH_SERVING for n in nodes)
    edges = (await stub.ListNodes(cp_pb2.ListNodesRequest(role=common_pb2.NODE_ROLE_EDGE), timeout=5)).nodes
    assert [n.info.node_id for n in edges] == ["edge-a"]

    qos = common_pb2.QoS(priority=2, latency_budget_ms=800)
    reply = await stub.EstablishSession(cp_pb2.EstablishSessionRequest(ue_id="ue-9", cell_id="cell-2", qos=qos),
                                        timeout=5)
    session = reply.session
    assert session.session_id and session.ai_flow_id and session.session_id != session.ai_flow_id
    assert session.serving_edge.node_id == "edge-a" and session.serving_cloud.node_id == "cloud-a"
    assert session.qos.latency_budget_ms == 800
    fetched = await stub.GetSession(cp_pb2.GetSessionRequest(session_id=session.session_id), timeout=5)
    assert fetched.session == session
    await stub.ReleaseSession(cp_pb2.ReleaseSessionRequest(session_id=session.session_id), timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetSession(cp_pb2.GetSessionRequest(session_id=session.session_id), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("node, needle", [
    (common_pb2.NodeInfo(node_id="edge-bad", role=common_pb2.NODE_ROLE_EDGE, address="h:1"), "cell"),
    (common_pb2.NodeInfo(node_id="cloud-bad", role=common_pb2.NODE_ROLE_CLOUD), "address"),
])
async def test_bad_registration_is_invalid_argument(core, node, needle):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await register_as_node(core.address, node)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in err.value.details()


async def test_unknown_ids_are_not_found(core, stub):
    for call in (
        stub.GetSession(cp_pb2.GetSessionRequest(session_id="sess-nope"), timeout=5),
        stub.ReleaseSession(cp_pb2.ReleaseSessionRequest(session_id="sess-nope"), timeout=5),
        stub.EstablishSession(cp_pb2.EstablishSessionRequest(ue_id="u", cell_id="cell-unknown"), timeout=5),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    ghost = common_pb2.NodeInfo(node_id="ghost", role=common_pb2.NODE_ROLE_EDGE)
    async with open_channel(core.address, as_node(ghost)) as channel:  # a node the core never registered
        beats = cp_grpc.ControlPlaneServiceStub(channel).Heartbeat()
        await beats.write(cp_pb2.HeartbeatRequest(node_id="ghost"))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await beats.read()
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_missing_fields_are_invalid_argument(stub):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.EstablishSession(cp_pb2.EstablishSessionRequest(cell_id="cell-1"), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "ue_id" in err.value.details()


async def test_agent_heartbeats_load_and_receives_peer_updates(core):
    received: list[cp_pb2.NodeCommand] = []
    load = common_pb2.NodeLoad(queue_depth=3, models_served=[common_pb2.ModelRef(name="gpt2", version="v7")])
    edge = ControlPlaneAgent(core.address, cp_pb2.RegisterNodeRequest(node=EDGE).node, lambda: load, received.append,
                             as_node(EDGE))
    cloud = ControlPlaneAgent(core.address, cp_pb2.RegisterNodeRequest(node=CLOUD).node, common_pb2.NodeLoad,
                              transport=as_node(CLOUD))
    edge.start()
    try:
        await eventually(lambda: edge.registrations == 1, "edge registration", timeout_s=5)
        cloud.start()
        await eventually(lambda: any(c.peers_update.cloud_nodes for c in received), "a peers update", timeout_s=5)
        clouds = [c for c in received if c.peers_update.cloud_nodes][-1].peers_update.cloud_nodes
        assert [n.info.address for n in clouds] == ["127.0.0.1:2"]
        await eventually(lambda: core.registry.get("edge-a").load.queue_depth == 3, "load in a heartbeat", timeout_s=5)
        async with open_channel(core.address) as channel:
            models = await cmp_grpc.ComputePlaneServiceStub(channel).ListModels(
                cmp_pb2.ListModelsRequest(role=common_pb2.NODE_ROLE_EDGE), timeout=5)
        assert [(m.model.version, list(m.node_ids)) for m in models.models] == [("v7", ["edge-a"])]
    finally:
        await edge.stop()
        await cloud.stop()


async def test_core_restart_nodes_come_back(core):
    agent = ControlPlaneAgent(core.address, cp_pb2.RegisterNodeRequest(node=EDGE).node, common_pb2.NodeLoad,
                              transport=as_node(EDGE))
    agent.start()
    try:
        await eventually(lambda: agent.registrations == 1, "first registration", timeout_s=5)
        address = core.address
        await core.stop(0)
        restarted = await start_core(CoreConfig(**tls("core", "core"), listen=address, heartbeat_interval_s=0.2))
        try:
            await eventually(lambda: len(restarted.registry.statuses()) == 1, "re-registration", timeout_s=5)
            assert restarted.registry.statuses()[0].info.node_id == "edge-a"
            await eventually(lambda: agent.registrations >= 2, "the agent seeing its re-registration", timeout_s=5)
        finally:
            await restarted.stop(0)
    finally:
        await agent.stop()


async def test_health_and_stale_nodes(core, stub):
    async with open_channel(core.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "netgpt.v1.ControlPlaneService", "netgpt.v1.ComputePlaneService"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    await register_as_node(core.address, EDGE)
    await eventually(lambda: core.registry.statuses()[0].health == common_pb2.NODE_HEALTH_STALE, "staleness")
    with pytest.raises(grpc.aio.AioRpcError) as err:  # a stale edge is not handed out
        await stub.EstablishSession(cp_pb2.EstablishSessionRequest(ue_id="u", cell_id="cell-1"), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
