"""ControlPlaneService alone, in process: registry, sessions and policy over in-memory state, no core
daemon and no nodes, talked to through the generated stub."""

from __future__ import annotations

import grpc
import pytest

from cp.policy import PolicyBook
from cp.registry import NodeRegistry
from cp.servicer import ControlPlaneServicer
from cp.sessions import SessionTable
from cp.state_db import MemoryState
from netgpt.channels import open_channel
from netgpt.server import Service, start_server
from netgpt.tls import PLAINTEXT
from netgpt.v1 import common_pb2
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import control_plane_pb2_grpc as cp_grpc

EDGE = common_pb2.NodeInfo(node_id="edge-a", role=common_pb2.NODE_ROLE_EDGE, address="127.0.0.1:2",
                           cell_ids=["cell-1"], capabilities=common_pb2.Capabilities(max_concurrency=2))
CLOUD = common_pb2.NodeInfo(node_id="cloud-a", role=common_pb2.NODE_ROLE_CLOUD, address="127.0.0.1:3",
                            capabilities=common_pb2.Capabilities(max_concurrency=4))


@pytest.fixture
async def control_plane():
    registry = NodeRegistry(heartbeat_interval_s=60)
    state = MemoryState()
    servicer = ControlPlaneServicer(registry, SessionTable(registry, state), PolicyBook(registry, state))
    server = await start_server("127.0.0.1:0", [Service("netgpt.v1.ControlPlaneService", servicer,
                                                        cp_grpc.add_ControlPlaneServiceServicer_to_server)])
    async with open_channel(server.address, PLAINTEXT) as channel:
        yield cp_grpc.ControlPlaneServiceStub(channel), registry
    await server.stop(0)


async def beat(stub: cp_grpc.ControlPlaneServiceStub, node_id: str,
               load: common_pb2.NodeLoad) -> list[cp_pb2.NodeCommand]:
    call = stub.Heartbeat(timeout=5)
    await call.write(cp_pb2.HeartbeatRequest(node_id=node_id, load=load, sequence=1))
    reply = await call.read()
    call.cancel()
    return list(reply.commands)


async def test_every_edge_heartbeat_carries_the_clouds_latest_load(control_plane):
    stub, _ = control_plane
    for node in (EDGE, CLOUD):
        await stub.RegisterNode(cp_pb2.RegisterNodeRequest(node=node), timeout=5)
    for queued in (7, 0):
        await beat(stub, "cloud-a", common_pb2.NodeLoad(queue_depth=queued))
        commands = await beat(stub, "edge-a", common_pb2.NodeLoad())
        peers = [c.peers_update for c in commands if c.HasField("peers_update")]
        assert [[s.load.queue_depth for s in p.cloud_nodes] for p in peers] == [[queued]]


async def test_sessions_go_to_the_least_loaded_edge_per_slot(control_plane):
    stub, _ = control_plane
    big = common_pb2.NodeInfo(node_id="edge-b", role=common_pb2.NODE_ROLE_EDGE, address="127.0.0.1:4",
                              cell_ids=["cell-1"], capabilities=common_pb2.Capabilities(max_concurrency=8))
    for node in (EDGE, big):
        await stub.RegisterNode(cp_pb2.RegisterNodeRequest(node=node), timeout=5)
    await beat(stub, "edge-a", common_pb2.NodeLoad(active_requests=2))  # 1.0 per slot
    await beat(stub, "edge-b", common_pb2.NodeLoad(active_requests=4))  # 0.5 per slot: less loaded
    reply = await stub.EstablishSession(cp_pb2.EstablishSessionRequest(ue_id="ue-1", cell_id="cell-1"), timeout=5)
    assert reply.session.serving_edge.node_id == "edge-b"


async def test_bad_and_unknown_input(control_plane):
    stub, _ = control_plane
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.RegisterNode(cp_pb2.RegisterNodeRequest(node=common_pb2.NodeInfo(role=common_pb2.NODE_ROLE_EDGE)),
                                timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "address" in err.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetSession(cp_pb2.GetSessionRequest(session_id="sess-nope"), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await beat(stub, "ghost", common_pb2.NodeLoad())
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "register again" in err.value.details()
