"""The all-in-one cluster cleans up after itself: its throw-away CA (private keys included) goes with it."""

from __future__ import annotations

from pathlib import Path

from throwaway_ca import TEST_PKI

from appkit.all_in_one import start_all_in_one
from netgpt.channels import open_channel
from netgpt.config import CloudConfig, CoreConfig, EdgeConfig
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import control_plane_pb2_grpc as cp_grpc


def _configs(tmp_path: Path) -> tuple[CoreConfig, CloudConfig, EdgeConfig]:
    return (CoreConfig(listen="127.0.0.1:0", heartbeat_interval_s=0.3, store_dir=str(tmp_path / "store")),
            CloudConfig(listen="127.0.0.1:0"), EdgeConfig(listen="127.0.0.1:0", profiles_db=":memory:"))


async def test_a_throw_away_ca_is_removed_when_the_cluster_stops(models, tmp_path: Path) -> None:
    cluster = await start_all_in_one(*models, *_configs(tmp_path))
    assert cluster.pki is not None
    folder = cluster.pki.folder
    try:
        assert (folder / "ca.key").exists() and folder in cluster.scratch
        async with open_channel(cluster.core.address, cluster.operator) as channel:
            nodes = await cp_grpc.ControlPlaneServiceStub(channel).ListNodes(cp_pb2.ListNodesRequest())
        assert {n.info.node_id for n in nodes.nodes} >= {"cloud-1", "edge-1"}
    finally:
        await cluster.stop()
    assert not folder.exists()


async def test_a_ca_the_caller_brought_is_left_alone(models, tmp_path: Path) -> None:
    cluster = await start_all_in_one(*models, *_configs(tmp_path), pki=TEST_PKI)
    await cluster.stop()
    assert cluster.scratch == [] and (TEST_PKI.folder / "ca.key").exists()
