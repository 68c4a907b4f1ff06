"""The clouds' statuses an edge routes on, through a real core on loopback (mutual TLS, each node with its
own certificate): handed to an edge only when they changed since it last got them, slimmed to what an edge
routes on; and sessions find their edge by cell after nodes re-register with other cells."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from helpers import register_as_node
from throwaway_ca import as_node

from netgpt.channels import open_channel
from netgpt.v1 import common_pb2
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import control_plane_pb2_grpc as cp_grpc

EDGE = common_pb2.NodeInfo(node_id="edge-a", role=common_pb2.NODE_ROLE_EDGE, address="127.0.0.1:1",
                           cell_ids=["cell-1"])
CLOUD = common_pb2.NodeInfo(node_id="cloud-a", role=common_pb2.NODE_ROLE_CLOUD, address="127.0.0.1:2",
                            region="eu")
CLOUD_B = common_pb2.NodeInfo(node_id="cloud-b", role=common_pb2.NODE_ROLE_CLOUD, address="127.0.0.1:3")
MODEL = common_pb2.ModelRef(name="llama", version="v1", sha256="ab" * 32)


class Beats:
    """One node's heartbeat stream: a beat, then the core's reply."""

    def __init__(self, info: common_pb2.NodeInfo, channel: grpc.aio.Channel) -> None:
        self.info = info
        self.call = cp_grpc.ControlPlaneServiceStub(channel).Heartbeat(timeout=30)
        self.sequence = 0

    async def beat(self, load: common_pb2.NodeLoad | None = None) -> list[cp_pb2.NodeCommand]:
        self.sequence += 1
        await self.call.write(cp_pb2.HeartbeatRequest(node_id=self.info.node_id, load=load or common_pb2.NodeLoad(),
                                                      sequence=self.sequence))
        reply = await asyncio.wait_for(self.call.read(), 5)
        return list(reply.commands)

    async def peers(self, load: common_pb2.NodeLoad | None = None) -> list[common_pb2.NodeStatus] | None:
        """The clouds in this beat's PeersUpdate; None when the reply carried none."""
        updates = [c.peers_update for c in await self.beat(load) if c.HasField("peers_update")]
        assert len(updates) <= 1
        return list(updates[0].cloud_nodes) if updates else None


@pytest.fixture
async def streams(core) -> AsyncIterator[dict[str, Beats]]:
    channels = {}
    for info in (EDGE, CLOUD, CLOUD_B):
        channels[info.node_id] = open_channel(core.address, as_node(info))
    yield {node_id: Beats(info, channels[node_id]) for node_id, info in
           (("edge-a", EDGE), ("cloud-a", CLOUD), ("cloud-b", CLOUD_B))}
    for channel in channels.values():
        await channel.close()


def busy(queue: int, calls: int) -> common_pb2.NodeLoad:
    return common_pb2.NodeLoad(queue_depth=queue, active_requests=2, tokens_per_second=10.0 + calls,
                               p50_first_token_ms=40.0, models_served=[MODEL], counters={"cloud_calls": calls},
                               blobs=["cd" * 32])


async def test_an_unchanged_cloud_status_is_not_sent_again_and_a_changed_one_is(core, streams):
    edge, cloud = streams["edge-a"], streams["cloud-a"]
    for info in (EDGE, CLOUD):
        await register_as_node(core.address, info)
    assert await cloud.peers(busy(queue=1, calls=1)) is None  # clouds get no peers
    first = await edge.peers()
    assert [(s.info.node_id, s.info.region, s.load.queue_depth, s.health) for s in first] == [
        ("cloud-a", "eu", 1, common_pb2.NODE_HEALTH_SERVING)]
    # what an edge routes on, and only that: no counters, blobs or throughput travel to every edge
    assert list(first[0].load.models_served) == [MODEL] and first[0].load.active_requests == 2
    assert not first[0].load.counters and not first[0].load.blobs and not first[0].load.tokens_per_second

    assert await edge.peers() is None  # nothing changed: not sent again
    await cloud.beat(busy(queue=1, calls=7))  # only counters and throughput moved: nothing an edge routes on
    assert await edge.peers() is None

    await cloud.beat(busy(queue=5, calls=8))  # the queue an edge routes on moved: sent
    assert [s.load.queue_depth for s in await edge.peers()] == [5]
    assert await edge.peers() is None

    await register_as_node(core.address, CLOUD_B)  # a new cloud: sent, with both
    assert [s.info.node_id for s in await edge.peers()] == ["cloud-a", "cloud-b"]
    assert await edge.peers() is None


async def test_a_cloud_going_stale_is_news_and_a_re_registered_edge_gets_the_clouds_again(core, streams):
    edge, cloud = streams["edge-a"], streams["cloud-a"]
    for info in (EDGE, CLOUD):
        await register_as_node(core.address, info)
    await cloud.beat(busy(queue=0, calls=1))
    assert [s.health for s in await edge.peers()] == [common_pb2.NODE_HEALTH_SERVING]
    stale_after_s = core.registry.stale_after_s
    await asyncio.sleep(stale_after_s + 0.3)  # the cloud falls silent; the edge beats on
    assert [s.health for s in await edge.peers()] == [common_pb2.NODE_HEALTH_STALE]
    assert await edge.peers() is None
    await cloud.beat(busy(queue=0, calls=2))  # back: serving again, and the edge hears of it
    assert [s.health for s in await edge.peers()] == [common_pb2.NODE_HEALTH_SERVING]

    await register_as_node(core.address, EDGE)  # e.g. the edge restarted: it holds no clouds, so it gets them
    assert [s.info.node_id for s in await edge.peers()] == ["cloud-a"]


async def test_sessions_follow_an_edge_that_registers_again_with_other_cells(core, core_channel):
    stub = cp_grpc.ControlPlaneServiceStub(core_channel)
    await register_as_node(core.address, EDGE)
    moved = common_pb2.NodeInfo()
    moved.CopyFrom(EDGE)
    moved.cell_ids[:] = ["cell-9"]
    await register_as_node(core.address, moved)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.EstablishSession(cp_pb2.EstablishSessionRequest(ue_id="ue-1", cell_id="cell-1"), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "cell-9" in err.value.details()
    reply = await stub.EstablishSession(cp_pb2.EstablishSessionRequest(ue_id="ue-1", cell_id="cell-9"), timeout=5)
    assert reply.session.serving_edge.node_id == "edge-a"
    assert not reply.session.serving_cloud.node_id  # no cloud registered
