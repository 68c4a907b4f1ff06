"""Two replicas' registries over one shared node store: each knows every node, and a command queued at
one replica reaches the node through the other. Run on SQLite (two connections to one file, as two
replicas on one machine would have) and, where a PostgreSQL server can be started, on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cp.node_store import NodeStore, node_tables
from cp.registry import NodeRegistry
from netgpt.database import Database
from netgpt.sqlite_db import SqliteDb
from netgpt.v1 import common_pb2
from netgpt.v1 import control_plane_pb2 as cp_pb2

INTERVAL_S = 1.0


class Clocks:
    """One wall clock for both replicas (NTP), each replica with its own monotonic clock."""

    def __init__(self) -> None:
        self.wall = 1_000_000.0

    def monotonic(self, offset: float) -> Callable[[], float]:
        return lambda: self.wall + offset


@pytest.fixture(params=["sqlite", "postgresql"])
def databases(request, tmp_path: Path) -> Iterator[tuple[Database, Database]]:
    if request.param == "sqlite":
        first = SqliteDb(tmp_path / "core.sqlite", [node_tables("sqlite")], "core state")
        second = SqliteDb(tmp_path / "core.sqlite", [node_tables("sqlite")], "core state")
    else:
        url = request.getfixturevalue("pg_url")
        from netgpt.pg_db import PgDb
        first = PgDb(url, [node_tables("postgresql")], "core state")
        second = PgDb(url, [node_tables("postgresql")], "core state")
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def _replicas(databases: tuple[Database, Database], clocks: Clocks) -> tuple[NodeRegistry, NodeRegistry]:
    return tuple(NodeRegistry(heartbeat_interval_s=INTERVAL_S, clock=clocks.monotonic(offset), wall=lambda: clocks.wall,
                              lost_after_s=10, retention_s=30, shared=NodeStore(db))
                 for offset, db in zip((-500.0, 7.0), databases, strict=True))  # type: ignore[return-value]


EDGE = common_pb2.NodeInfo(node_id="edge-1", role=common_pb2.NODE_ROLE_EDGE, address="10.0.0.1:1", cell_ids=["c1"])
CLOUD = common_pb2.NodeInfo(node_id="cloud-1", role=common_pb2.NODE_ROLE_CLOUD, address="10.0.0.2:1")


def _health(registry: NodeRegistry, node_id: str) -> str:
    return common_pb2.NodeHealth.Name(registry.node_status(node_id).health)


def test_each_replica_knows_the_nodes_that_beat_to_the_other(databases):
    clocks = Clocks()
    a, b = _replicas(databases, clocks)
    a.register(EDGE)
    b.register(CLOUD)
    clocks.wall += 0.5
    b.heartbeat("cloud-1", common_pb2.NodeLoad(queue_depth=3))
    assert a.merge_shared() == 1 and b.merge_shared() == 1
    assert a.pick_cloud().info.node_id == "cloud-1" and a.pick_cloud().load.queue_depth == 3
    assert b.pick_edge("c1").info.node_id == "edge-1"
    # the edge at replica A learns of the cloud at replica B with its next beat
    peers = [c.peers_update for c in a.heartbeat("edge-1", common_pb2.NodeLoad()) if c.HasField("peers_update")]
    assert [s.info.node_id for s in peers[-1].cloud_nodes] == ["cloud-1"]


def test_a_node_silent_everywhere_goes_stale_and_lost_at_every_replica(databases):
    clocks = Clocks()
    a, b = _replicas(databases, clocks)
    b.register(CLOUD)
    a.merge_shared()
    assert _health(a, "cloud-1") == "NODE_HEALTH_SERVING"
    clocks.wall += 4 * INTERVAL_S
    a.merge_shared()
    assert _health(a, "cloud-1") == "NODE_HEALTH_STALE" and a.pick_cloud() is None
    clocks.wall += 10
    a.merge_shared()
    assert _health(a, "cloud-1") == "NODE_HEALTH_LOST"
    clocks.wall += 30
    assert a.sweep() == ["cloud-1"] and databases[0].query("SELECT count(*) FROM nodes")[0][0] == 0


def test_a_command_queued_at_one_replica_reaches_the_node_at_the_other_once(databases):
    clocks = Clocks()
    a, b = _replicas(databases, clocks)
    b.register(EDGE)
    a.merge_shared()
    deploy = cp_pb2.NodeCommand(command_id="deploy-1", deploy=cp_pb2.DeployCommand())
    a.queue_command("edge-1", deploy)
    a.queue_command("edge-1", cp_pb2.NodeCommand(command_id="cancel-2", cancel_training=cp_pb2.CancelTrainingCommand()))
    delivered = [c.command_id for c in b.heartbeat("edge-1", common_pb2.NodeLoad())]
    assert "deploy-1" in delivered and delivered.index("deploy-1") < delivered.index("cancel-2")
    assert "deploy-1" not in [c.command_id for c in b.heartbeat("edge-1", common_pb2.NodeLoad())]


def test_a_whole_state_command_replaces_its_undelivered_predecessor(databases):
    clocks = Clocks()
    a, b = _replicas(databases, clocks)
    b.register(EDGE)
    a.merge_shared()
    for number in (1, 2):
        a.queue_replacing("edge-1", cp_pb2.NodeCommand(command_id=f"state-{number}", ue_tokens=cp_pb2.UeTokenState()))
    delivered = [c.command_id for c in b.heartbeat("edge-1", common_pb2.NodeLoad()) if c.HasField("ue_tokens")]
    assert delivered == ["state-2"]


def test_a_beat_here_is_fresher_than_an_older_one_from_the_shared_store(databases):
    clocks = Clocks()
    a, b = _replicas(databases, clocks)
    a.register(EDGE)
    b.merge_shared()
    clocks.wall += 2
    b.register(EDGE)  # the node moved to replica B
    b.heartbeat("edge-1", common_pb2.NodeLoad(active_requests=5))
    a.merge_shared()
    assert a.get("edge-1").remote and a.get("edge-1").load.active_requests == 5
    assert not b.get("edge-1").remote


def test_a_node_registered_at_the_other_replica_is_found_before_the_next_merge(databases):
    clocks = Clocks()
    a, b = _replicas(databases, clocks)
    b.register(EDGE)
    assert a.get("edge-1").remote  # looked up in the shared store on the miss
    a.queue_command("edge-1", cp_pb2.NodeCommand(command_id="c-1", deploy=cp_pb2.DeployCommand()))
    assert "c-1" in [c.command_id for c in b.heartbeat("edge-1", common_pb2.NodeLoad())]  # (with a peers update)


def test_one_core_hands_commands_queued_before_its_restart_to_the_node_that_registers_again(tmp_path: Path):
    """One core on SQLite keeps its registry in memory but journals the queues: what it acknowledged
    survives a kill -9 (a new registry on the same file stands for the restarted core)."""
    db = SqliteDb(tmp_path / "core.sqlite", [node_tables("sqlite")], "core state")

    def core() -> NodeRegistry:
        return NodeRegistry(heartbeat_interval_s=INTERVAL_S, journal=NodeStore(db))

    try:
        before = core()
        before.register(CLOUD)
        before.queue_command("cloud-1", cp_pb2.NodeCommand(command_id="deploy-1", deploy=cp_pb2.DeployCommand()))
        for number in (1, 2):  # a whole-state command replaces its predecessor in the journal too
            before.queue_replacing("cloud-1", cp_pb2.NodeCommand(command_id=f"state-{number}",
                                                                 ue_tokens=cp_pb2.UeTokenState()))
        after = core()  # restarted: the node is unknown until it registers again
        after.register(CLOUD)
        assert [c.command_id for c in after.heartbeat("cloud-1", common_pb2.NodeLoad())] == ["deploy-1", "state-2"]
        assert after.heartbeat("cloud-1", common_pb2.NodeLoad()) == []
        again = core()  # delivered commands are not handed out twice
        again.register(CLOUD)
        assert again.heartbeat("cloud-1", common_pb2.NodeLoad()) == []
    finally:
        db.close()
