"""Transport security and authorisation, tried from outside as an attacker would.

Each test is one row of the attack table in the README's security section: what a caller without
the right certificate tries, and the status it gets.
"""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
from helpers import concise, eventually
from structlog.testing import capture_logs
from throwaway_ca import TEST_PKI, as_node, identity, operator, tls

from cmp.transfer_client import publish_file
from core.daemon import start_core
from netgpt.access_rules import cloud_rules, core_rules, edge_rules
from netgpt.channels import open_channel
from netgpt.config import CoreConfig
from netgpt.errors import StartupError
from netgpt.pki import init_ca, issue
from netgpt.tls import PLAINTEXT, LocalPki, load_identity, resolve
from netgpt.v1 import (
    blob_pb2,
    common_pb2,
    compute_plane_pb2,
    control_plane_pb2,
    network_management_pb2,
    profile_pb2,
    ran_pb2,
    training_pb2,
    user_plane_pb2,
    workflow_pb2,
)
from netgpt.v1 import compute_plane_pb2_grpc as cmp_grpc
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import control_plane_pb2_grpc as cp_grpc
from netgpt.v1 import profile_pb2_grpc as profile_grpc
from netgpt.v1 import user_plane_pb2_grpc as up_grpc

DENIED = grpc.StatusCode.PERMISSION_DENIED


def _methods(*files) -> set[str]:
    services = [service for file in files for service in file.DESCRIPTOR.services_by_name.values()]
    return {f"/{service.full_name}/{method.name}" for service in services for method in service.methods}


def test_every_rpc_has_an_access_rule():
    """Deny by default is the safety net; a method missing here would be closed to everyone, by accident."""
    core_served = _methods(control_plane_pb2, compute_plane_pb2, training_pb2, workflow_pb2, blob_pb2, ran_pb2)
    assert core_served == set(core_rules(lambda request: ""))
    edge_served = _methods(user_plane_pb2, profile_pb2, blob_pb2, network_management_pb2)
    assert edge_served == set(edge_rules(lambda request: ""))
    assert _methods(user_plane_pb2, blob_pb2) == set(cloud_rules())


async def _ue_session(cluster, ue: str) -> cp_pb2.AiSession:
    async with open_channel(cluster.core.address, identity("ue", ue)) as channel:
        request = cp_pb2.EstablishSessionRequest(ue_id=ue, cell_id="cell-harbour-1")
        return (await cp_grpc.ControlPlaneServiceStub(channel).EstablishSession(request, timeout=10)).session


async def _status(call) -> grpc.StatusCode:
    try:
        result = call()
        if hasattr(result, "__aiter__"):
            async for _ in result:
                pass
        else:
            await result
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def test_a_client_without_a_certificate_cannot_even_connect(cluster):
    async with grpc.aio.secure_channel(cluster.core.address,
                                       grpc.ssl_channel_credentials(root_certificates=TEST_PKI.identity(
                                           "operator", "operator").ca)) as channel:
        code = await _status(lambda: cp_grpc.ControlPlaneServiceStub(channel).ListNodes(
            cp_pb2.ListNodesRequest(), timeout=5))
    assert code == grpc.StatusCode.UNAVAILABLE  # the TLS handshake fails: no call reaches a servicer
    async with open_channel(cluster.core.address, PLAINTEXT) as channel:
        code = await _status(lambda: cp_grpc.ControlPlaneServiceStub(channel).ListNodes(
            cp_pb2.ListNodesRequest(), timeout=5))
    assert code == grpc.StatusCode.UNAVAILABLE


async def test_a_certificate_from_another_ca_is_refused(cluster, tmp_path: Path):
    rogue = LocalPki(tmp_path / "rogue")
    files = rogue.files("operator", "operator")  # same name and role, wrong CA
    forged = rogue.identity("operator", "operator")
    async with open_channel(cluster.core.address, forged) as channel:
        code = await _status(lambda: cmp_grpc.ComputePlaneServiceStub(channel).DeployModel(
            compute_plane_pb2.DeployModelRequest(name="x", version="y"), timeout=5))
    assert code == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(StartupError, match="not issued by the configured CA"):
        load_identity(str(TEST_PKI.folder / "ca.crt"), str(files.cert), str(files.key))


async def test_a_ue_cannot_operate_the_network(cluster):
    async with open_channel(cluster.core.address, identity("ue", "ue-mallory")) as channel:
        cmp, cp = cmp_grpc.ComputePlaneServiceStub(channel), cp_grpc.ControlPlaneServiceStub(channel)
        attempts = {
            "deploy": lambda: cmp.DeployModel(compute_plane_pb2.DeployModelRequest(name="m", version="v"), timeout=5),
            "rollback": lambda: cmp.RollbackModel(compute_plane_pb2.RollbackModelRequest(), timeout=5),
            "policy": lambda: cp.SetRoutingPolicy(cp_pb2.SetRoutingPolicyRequest(), timeout=5),
            "list nodes": lambda: cp.ListNodes(cp_pb2.ListNodesRequest(), timeout=5),
            "register": lambda: cp.RegisterNode(cp_pb2.RegisterNodeRequest(node=common_pb2.NodeInfo(
                node_id="cloud-1", role=common_pb2.NODE_ROLE_CLOUD, address="127.0.0.1:1")), timeout=5),
        }
        codes = {name: await _status(call) for name, call in attempts.items()}
    assert codes == {name: DENIED for name in attempts}


async def test_a_node_cannot_register_as_another_node(cluster):
    """The forged-cloud attack: an edge's certificate claiming the live cloud's id (or any cloud id)."""
    live_cloud = cluster.cloud.agent.info
    for claim in (live_cloud, common_pb2.NodeInfo(node_id="edge-1", role=common_pb2.NODE_ROLE_CLOUD,
                                                  address="127.0.0.1:1")):
        request = cp_pb2.RegisterNodeRequest(node=claim)
        async with open_channel(cluster.core.address, identity("edge", "edge-1")) as channel:
            stub = cp_grpc.ControlPlaneServiceStub(channel)
            code = await _status(lambda: stub.RegisterNode(request, timeout=5))  # noqa: B023  # awaited at once
        assert code == DENIED
    statuses = {s.info.node_id: s.info.address for s in cluster.core.registry.statuses()}
    assert statuses["cloud-1"] == live_cloud.address  # the real cloud is still the one the core hands out


async def test_a_node_heartbeats_only_as_itself(cluster):
    async with open_channel(cluster.core.address, identity("edge", "edge-1")) as channel:
        beats = cp_grpc.ControlPlaneServiceStub(channel).Heartbeat()
        await beats.write(cp_pb2.HeartbeatRequest(node_id="cloud-1"))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await beats.read()
    assert err.value.code() == DENIED


async def test_a_ue_acts_only_for_itself(cluster):
    alice = await _ue_session(cluster, "ue-alice")
    async with open_channel(cluster.core.address, identity("ue", "ue-mallory")) as channel:
        cp = cp_grpc.ControlPlaneServiceStub(channel)
        establish_for_alice = await _status(lambda: cp.EstablishSession(
            cp_pb2.EstablishSessionRequest(ue_id="ue-alice", cell_id="cell-harbour-1"), timeout=5))
        read_alices = await _status(lambda: cp.GetSession(cp_pb2.GetSessionRequest(session_id=alice.session_id),
                                                          timeout=5))
        release_alices = await _status(lambda: cp.ReleaseSession(
            cp_pb2.ReleaseSessionRequest(session_id=alice.session_id), timeout=5))
    async with open_channel(cluster.edge.address, identity("ue", "ue-mallory")) as channel:
        generate_in_alices = await _status(lambda: up_grpc.UserPlaneServiceStub(channel).Generate(
            concise(alice, "Where can I eat?"), timeout=30))
        profile = profile_grpc.ProfileServiceStub(channel)
        read_profile = await _status(lambda: profile.GetProfile(profile_pb2.GetProfileRequest(user_id="ue-alice"),
                                                                timeout=5))
        delete_profile = await _status(lambda: profile.DeleteProfile(
            profile_pb2.DeleteProfileRequest(user_id="ue-alice"), timeout=5))
    assert [establish_for_alice, read_alices, release_alices, generate_in_alices, read_profile, delete_profile] == \
        [DENIED] * 6
    async with open_channel(cluster.edge.address, identity("ue", "ue-alice")) as channel:  # alice herself may
        events = [e async for e in up_grpc.UserPlaneServiceStub(channel).Generate(concise(alice, "Where can I eat?"),
                                                                                timeout=60)]
        assert events[-1].HasField("summary")
        await profile_grpc.ProfileServiceStub(channel).UpdateProfile(
            profile_pb2.UpdateProfileRequest(user_id="ue-alice", preferences=["seafood"]), timeout=5)


async def test_only_edges_send_prompts_to_the_cloud(cluster):
    request = user_plane_pb2.GenerateRequest(kind=user_plane_pb2.PROMPT_KIND_COMPREHENSIVE, prompt="hello",
                                             params=user_plane_pb2.GenerationParams(max_new_tokens=2))
    for caller in (identity("ue", "ue-alice"), identity("cloud", "cloud-other")):
        async with open_channel(cluster.cloud.address, caller) as channel:
            assert await _status(lambda: up_grpc.UserPlaneServiceStub(channel).Generate(request, timeout=10)) == DENIED
    assert [e async for e in _as(cluster.cloud.address, as_node(cluster.edge.agent.info), request)][-1] \
        .HasField("summary")


async def _as(address: str, who, request):
    async with open_channel(address, who) as channel:
        async for event in up_grpc.UserPlaneServiceStub(channel).Generate(request, timeout=30):
            yield event


async def test_operator_actions_are_audited_with_who_what_and_outcome(cluster, tmp_path: Path):
    blob = tmp_path / "adapter.bin"
    blob.write_bytes(b"\0" * 1000)
    async with open_channel(cluster.core.address, operator()) as channel:
        cmp = cmp_grpc.ComputePlaneServiceStub(channel)
        code = await _status(lambda: cmp.DeployModel(
            compute_plane_pb2.DeployModelRequest(name="no-such-model", version="v9", node_ids=["edge-1"]), timeout=5))
        await publish_file(cmp, compute_plane_pb2.ModelManifest(
            name="audited", version="v1", kind=common_pb2.MODEL_KIND_DATASET), blob)
    assert code == grpc.StatusCode.NOT_FOUND
    path = Path(cluster.core.store.root) / "audit.jsonl"
    await eventually(path.exists, "the audit log")
    entry = [e for e in _lines(path) if e["method"].endswith("/DeployModel")][-1]
    assert entry["who"] == "operator" and entry["role"] == "operator"
    assert entry["target"]["name"] == "no-such-model" and entry["outcome"] == "NOT_FOUND"
    assert entry["ts"] > 0
    upload = [e for e in _lines(path) if e["method"].endswith("/PublishModel")][-1]
    assert upload["target"]["manifest.name"] == "audited" and upload["outcome"] == "OK"


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def test_a_daemon_without_tls_material_refuses_to_start(tmp_path: Path):
    with pytest.raises(StartupError, match="no TLS material"):
        await start_core(CoreConfig(listen="127.0.0.1:0", store_dir=str(tmp_path)))
    with pytest.raises(StartupError, match="loopback development only"):
        await start_core(CoreConfig(listen="0.0.0.0:0", store_dir=str(tmp_path), insecure=True))
    with pytest.raises(StartupError, match="role 'edge'"):  # an edge's certificate cannot run the core
        await start_core(CoreConfig(**tls("edge", "edge-1"), listen="127.0.0.1:0", store_dir=str(tmp_path)))
    with capture_logs() as logs:
        development = await start_core(CoreConfig(listen="127.0.0.1:0", store_dir=str(tmp_path), insecure=True))
    assert any(e["event"] == "tls.insecure" and e["log_level"] == "warning" for e in logs)
    try:
        async with open_channel(development.address, PLAINTEXT) as channel:
            await cp_grpc.ControlPlaneServiceStub(channel).ListNodes(cp_pb2.ListNodesRequest(), timeout=5)
    finally:
        await development.stop(0)


def test_client_identity_resolution_is_strict():
    with pytest.raises(StartupError, match="no TLS material"):
        resolve("", "", "", False, "127.0.0.1:50051", "netgpt client")
    with pytest.raises(StartupError, match="incomplete TLS material"):
        resolve(str(TEST_PKI.folder / "ca.crt"), "", "", False, "127.0.0.1:50051", "netgpt client")
    with capture_logs():
        assert resolve("", "", "", True, "localhost:50051", "netgpt client") is PLAINTEXT


def test_pki_refuses_to_overwrite_a_ca_and_bad_names(tmp_path: Path):
    init_ca(tmp_path)
    with pytest.raises(StartupError, match="exists"):
        init_ca(tmp_path)
    with pytest.raises(StartupError, match="name"):
        issue(tmp_path, "edge", "../etc/passwd")
    with pytest.raises(StartupError, match="role"):
        issue(tmp_path, "root", "x")
    made = issue(tmp_path, "ue", "ue-7", hosts=["10.1.2.3"])
    assert (made.key.stat().st_mode & 0o777) == 0o600
    assert load_identity(str(made.ca), str(made.cert), str(made.key)).role == "ue"
