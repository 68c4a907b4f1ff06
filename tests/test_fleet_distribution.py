"""Node-to-node distribution under faults, on loopback: real core, real edge nodes serving
BlobService, generated stubs. A peer killed mid-transfer, a peer serving corrupted bytes, the
core restarted during a fleet deploy: every node ends on the verified version (or reports a
clear failure) and no node ever holds, let alone serves, a blob that does not hash to its name."""

from __future__ import annotations

import os
from pathlib import Path

import grpc
import pytest
from deploy_helpers import padded_edge_artifact, publish
from helpers import eventually
from throwaway_ca import tls

from bench.fleet import deploy_to, settle_all, shelf_is_verified, start_fleet_edge
from cmp.distribution import DeployTree, Peer
from cmp.pieces import Pieces
from cmp.upload_budget import UploadBudget
from core.daemon import start_core
from edge_node.daemon import load_edge_model
from edge_node.model.artifact import build_edge_artifact
from netgpt.channels import open_channel
from netgpt.config import CoreConfig, EdgeConfig
from netgpt.errors import ResourceExhausted
from netgpt.v1 import blob_pb2, common_pb2
from netgpt.v1 import blob_pb2_grpc as blob_grpc
from netgpt.v1 import compute_plane_pb2_grpc as cmp_grpc

MiB = 1 << 20
SERVING = common_pb2.DEPLOYMENT_PHASE_SERVING
EDGE = common_pb2.MODEL_KIND_ONNX_EDGE


@pytest.fixture(scope="module")
def models(tiny) -> tuple[object]:
    """The tiny edge GPT-2 every fleet node starts on (deploys replace it)."""
    return (load_edge_model(EdgeConfig(model="tiny", providers="cpu")),)


@pytest.fixture(scope="module")
def artifact(tiny, tmp_path_factory) -> Path:
    """A real edge artifact padded to ~6 MiB: six 1 MiB pieces to fail in the middle of."""
    root = tmp_path_factory.mktemp("fleet-artifact")
    edge = build_edge_artifact(tiny.gpt2_dir, root / "edge.tar").path
    return padded_edge_artifact(edge, root / "padded.tar", 6 * MiB)


def core_config(tmp_path: Path, listen: str = "127.0.0.1:0") -> CoreConfig:
    return CoreConfig(**tls("core", "core"), listen=listen, heartbeat_interval_s=0.2, store_dir=str(tmp_path / "store"))


async def seeded(core, models, tmp_path: Path, artifact: Path, stub, **edge_a: object):
    """Publish the artifact and deploy it to edge-a alone, so edge-a holds it verified."""
    ref = await publish(stub, artifact, "gpt2-edge", "v2", EDGE)
    node = await start_fleet_edge(core.address, "edge-a", tmp_path, models[0], **tls("edge", "edge-a"), **edge_a)
    await eventually(lambda: core.registry.statuses(), "edge-a registered")
    states = await settle_all(stub, await deploy_to(stub, "gpt2-edge", "v2", ["edge-a"]))
    assert states["edge-a"].phase == SERVING
    await eventually(lambda: any(ref.sha256 in s.load.blobs for s in core.registry.statuses()),
                     "edge-a advertising the blob")
    return ref, node


def fetched(node) -> int:
    """Verified bytes of the node's newest deployment so far."""
    states = node.deployer.states()
    return states[0].bytes_done if states else 0


def source_of(state: common_pb2.DeploymentState, node_id: str) -> common_pb2.TransferSource:
    return next(s for s in state.sources if s.node_id == node_id)


async def test_peer_killed_mid_transfer_costs_a_retry_not_the_deploy(models, artifact, tmp_path):
    core = await start_core(core_config(tmp_path))
    nodes = []
    try:
        async with open_channel(core.address) as channel:
            stub = cmp_grpc.ComputePlaneServiceStub(channel)
            # edge-a uploads at 1 MiB/s: edge-b's transfer is still running when edge-a goes away
            ref, edge_a = await seeded(core, models, tmp_path, artifact, stub, upload_mib_s=1.0)
            edge_b = await start_fleet_edge(core.address, "edge-b", tmp_path, models[0], **tls("edge", "edge-b"))
            nodes += [edge_a, edge_b]
            await eventually(lambda: len(core.registry.statuses()) == 2, "edge-b registered")
            commands = await deploy_to(stub, "gpt2-edge", "v2", ["edge-b"])
            await eventually(lambda: fetched(edge_b) >= MiB, "edge-b has a piece from edge-a")
            await edge_a.stop(0)  # the peer goes away mid-transfer
            nodes.remove(edge_a)
            state = (await settle_all(stub, commands))["edge-b"]
        assert (state.phase, state.error) == (SERVING, "")
        assert edge_b.slot.current.ref == ref and shelf_is_verified(edge_b)
        peer, core_source = source_of(state, "edge-a"), source_of(state, "")
        assert peer.dropped and peer.error.split(":")[0] in {"UNAVAILABLE", "CANCELLED"}
        assert MiB <= peer.bytes < ref_size(artifact)
        assert peer.bytes + core_source.bytes == ref_size(artifact) and not core_source.dropped
    finally:
        for node in nodes:
            await node.stop(0)
        await core.stop(0)


def ref_size(artifact: Path) -> int:
    return artifact.stat().st_size


async def test_peer_serving_corrupted_bytes_is_dropped_and_its_range_refetched(models, artifact, tmp_path):
    core = await start_core(core_config(tmp_path))
    nodes = []
    try:
        async with open_channel(core.address) as channel:
            stub = cmp_grpc.ComputePlaneServiceStub(channel)
            ref, edge_a = await seeded(core, models, tmp_path, artifact, stub)
            nodes.append(edge_a)
            blob = edge_a.deployer.blobs.root / ref.sha256  # tamper with edge-a's verified copy on disk
            os.chmod(blob, 0o644)
            with open(blob, "r+b") as handle:
                handle.seek(3 * MiB + 17)
                byte = handle.read(1)
                handle.seek(3 * MiB + 17)
                handle.write(bytes([byte[0] ^ 0xFF]))
            edge_b = await start_fleet_edge(core.address, "edge-b", tmp_path, models[0], **tls("edge", "edge-b"))
            nodes.append(edge_b)
            await eventually(lambda: len(core.registry.statuses()) >= 2, "edge-b registered")
            state = (await settle_all(stub, await deploy_to(stub, "gpt2-edge", "v2", ["edge-b"])))["edge-b"]
        assert (state.phase, state.error) == (SERVING, "")
        assert edge_b.slot.current.ref == ref and shelf_is_verified(edge_b)
        peer, core_source = source_of(state, "edge-a"), source_of(state, "")
        assert peer.dropped and peer.error.startswith("DATA_LOSS") and "piece 3" in peer.error
        assert peer.bytes + core_source.bytes == ref_size(artifact) and core_source.bytes >= MiB
    finally:
        for node in nodes:
            await node.stop(0)
        await core.stop(0)


async def test_core_restarted_during_a_fleet_deploy_every_node_ends_verified(models, artifact, tmp_path):
    core = await start_core(core_config(tmp_path))
    port = core.address.rpartition(":")[2]
    nodes = [await start_fleet_edge(core.address, f"edge-{i}", tmp_path, models[0], **tls("edge", f"edge-{i}"))
             for i in range(3)]
    try:
        async with open_channel(core.address) as channel:
            stub = cmp_grpc.ComputePlaneServiceStub(channel)
            ref = await publish(stub, artifact, "gpt2-edge", "v2", EDGE)
            await eventually(lambda: len(core.registry.statuses()) == 3, "three edges registered")
            core.uploads.rate_bytes_s = MiB  # the first core serves slowly: the restart lands mid-transfer
            commands = await deploy_to(stub, "gpt2-edge", "v2", [n.agent.info.node_id for n in nodes])
            await eventually(lambda: any(fetched(n) >= MiB for n in nodes), "the seed has a piece from the core")
        served_before = core.uploads.bytes_served
        await core.stop(0)
        core = await start_core(core_config(tmp_path, listen=f"127.0.0.1:{port}"))
        async with open_channel(core.address) as channel:
            states = await settle_all(cmp_grpc.ComputePlaneServiceStub(channel), commands)
        assert MiB <= served_before < ref_size(artifact)
        for node in nodes:
            state = states[node.agent.info.node_id]
            assert (state.phase, state.error) == (SERVING, ""), state
            assert node.slot.current.ref == ref and shelf_is_verified(node)
        from_core = sum(s.bytes for st in states.values() for s in st.sources if not s.node_id)
        assert from_core < 2 * ref_size(artifact)  # the other two fetched from the seed, not the core
    finally:
        for node in nodes:
            await node.stop(0)
        await core.stop(0)


async def test_a_node_never_serves_a_blob_it_has_not_verified(models, artifact, tmp_path):
    core = await start_core(core_config(tmp_path))
    edge = await start_fleet_edge(core.address, "edge-a", tmp_path, models[0], **tls("edge", "edge-a"))
    try:
        async with open_channel(core.address) as core_channel, open_channel(edge.address) as edge_channel:
            ref = await publish(cmp_grpc.ComputePlaneServiceStub(core_channel), artifact, "gpt2-edge", "v2", EDGE)
            part = edge.deployer.fetcher.artifacts / "partial.part"  # a download in progress, bytes all correct
            part.parent.mkdir(parents=True, exist_ok=True)
            part.write_bytes(artifact.read_bytes()[:2 * MiB])
            peer = blob_grpc.BlobServiceStub(edge_channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                async for _ in peer.FetchBlob(blob_pb2.FetchBlobRequest(sha256=ref.sha256), timeout=10):
                    pass
            assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        await edge.stop(0)
        await core.stop(0)


def test_plan_lists_holders_nearest_region_first_then_earlier_targets_then_the_core():
    pieces = Pieces(3 * MiB, MiB, ("a", "b", "c"))
    holders = [Peer("far", "far:1", "eu"), Peer("near", "near:1", "us")]
    tree = DeployTree(holders)
    plans = [tree.plan(Peer(f"t{i}", f"t{i}:1", "us"), "f" * 64, pieces) for i in range(6)]
    assert [s.label for s in plans[0].sources] == ["near", "far", "core"] and not plans[0].seed
    assert [s.label for s in plans[5].sources] == ["near", "far", "t1", "t2", "t3", "t4", "t0", "core"]
    fresh = DeployTree([])
    first, second = (fresh.plan(Peer(n, f"{n}:1"), "f" * 64, pieces) for n in ("a", "b"))
    assert first.seed and [s.label for s in first.sources] == ["core"]
    assert not second.seed and [s.label for s in second.sources] == ["a", "core"]
    assert [s.label for s in DeployTree(holders, max_sources=0).plan(Peer("x", "x:1"), "f" * 64, pieces).sources] \
        == ["core"]


def test_upload_budget_serves_a_few_peers_at_a_time_then_the_next():
    budget = UploadBudget(max_streams=4, max_peers=1, idle_s=0.0)
    with budget.stream("a"), budget.stream("a"):
        with pytest.raises(ResourceExhausted), budget.stream("b"):
            pass
    with budget.stream("b"):  # "a" went idle: the next peer's turn
        pass
    busy = UploadBudget(max_streams=1)
    with busy.stream(), pytest.raises(ResourceExhausted), busy.stream():
        pass
