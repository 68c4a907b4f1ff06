"""The ComputePlane servicer in process: only that service on loopback, a real NodeRegistry (or a
tiny in-test directory) standing in for the control plane, talked to through the generated stub.
No core daemon, no nodes, no models."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from cmp.servicer import ComputePlaneServicer
from cmp.store import ModelStore
from cmp.transfer_client import publish_file
from cp.registry import NodeRegistry
from netgpt.channels import open_channel
from netgpt.errors import NotFound
from netgpt.server import Service, start_server
from netgpt.tls import PLAINTEXT
from netgpt.v1 import common_pb2
from netgpt.v1 import compute_plane_pb2 as cmp_pb2
from netgpt.v1 import compute_plane_pb2_grpc as cmp_grpc
from netgpt.v1 import control_plane_pb2 as cp_pb2

EDGE, CLOUD = common_pb2.NODE_ROLE_EDGE, common_pb2.NODE_ROLE_CLOUD
ONNX, LORA, CKPT = common_pb2.MODEL_KIND_ONNX_EDGE, common_pb2.MODEL_KIND_LORA_ADAPTER, common_pb2.MODEL_KIND_CHECKPOINT
PENDING = common_pb2.DEPLOYMENT_PHASE_PENDING


def ref(name: str, version: str, sha: str, kind: int = ONNX, base_model: str = "") -> common_pb2.ModelRef:
    return common_pb2.ModelRef(name=name, version=version, sha256=sha * 64, kind=kind, base_model=base_model)


def node(node_id: str, role: int, *models: common_pb2.ModelRef) -> common_pb2.NodeInfo:
    cells = ["cell-1"] if role == EDGE else []
    return common_pb2.NodeInfo(node_id=node_id, role=role, address=f"{node_id}:1", cell_ids=cells,
                               capabilities=common_pb2.Capabilities(models=models))


GPT2 = ref("gpt2-edge", "v1", "a")
LLAMA = ref("llama", "base", "c", kind=CKPT)


@dataclass
class Core:
    stub: cmp_grpc.ComputePlaneServiceStub
    registry: NodeRegistry
    tmp: Path

    async def publish(self, name: str, version: str, kind: int, base_model: str = "",
                      data: bytes = b"weights") -> cmp_pb2.ModelManifest:
        path = self.tmp / f"{name}-{version}.bin"
        path.write_bytes(data + name.encode() + version.encode())
        manifest = cmp_pb2.ModelManifest(name=name, version=version, kind=kind, base_model=base_model)
        return (await publish_file(self.stub, manifest, path, timeout_s=10)).manifest

    def commands(self, node_id: str) -> list[cp_pb2.NodeCommand]:
        """The deploy and rollback commands a node's next heartbeat would receive (peer updates dropped)."""
        load = self.registry.node_status(node_id).load
        return [c for c in self.registry.heartbeat(node_id, load) if c.WhichOneof("command") != "peers_update"]


@asynccontextmanager
async def serve(servicer: ComputePlaneServicer) -> AsyncIterator[cmp_grpc.ComputePlaneServiceStub]:
    server = await start_server("127.0.0.1:0", [
        Service("netgpt.v1.ComputePlaneService", servicer, cmp_grpc.add_ComputePlaneServiceServicer_to_server)])
    try:
        async with open_channel(server.address, PLAINTEXT) as channel:
            yield cmp_grpc.ComputePlaneServiceStub(channel)
    finally:
        await server.stop(0)


@pytest.fixture
async def core(tmp_path: Path) -> AsyncIterator[Core]:
    registry = NodeRegistry(heartbeat_interval_s=60)  # nobody heartbeats here: no node goes stale
    registry.register(node("edge-a", EDGE, GPT2))
    registry.register(node("edge-b", EDGE, GPT2))
    registry.register(node("cloud-a", CLOUD, LLAMA))
    async with serve(ComputePlaneServicer(registry, ModelStore(tmp_path / "store"))) as stub:
        yield Core(stub, registry, tmp_path)


async def deploy(core: Core, name: str, version: str, *node_ids: str, role: int = 0) -> cmp_pb2.DeployModelResponse:
    request = cmp_pb2.DeployModelRequest(name=name, version=version, node_ids=node_ids, role=role)
    return await core.stub.DeployModel(request, timeout=5)


async def status_code(call) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value.code()


# --- ListModels -------------------------------------------------------------------------------


async def test_list_models_groups_nodes_by_exact_model(core: Core) -> None:
    other_build = ref("gpt2-edge", "v1", "b")  # same name and version, other bytes: another model
    core.registry.register(node("edge-c", EDGE, other_build))
    core.registry.register(node("edge-d", EDGE, ref("gpt2-edge", "v0", "a")))
    core.registry.heartbeat("edge-d", common_pb2.NodeLoad(models_served=[GPT2]))  # heartbeat beats registration

    edges = (await core.stub.ListModels(cmp_pb2.ListModelsRequest(role=EDGE), timeout=5)).models
    assert [(m.model, list(m.node_ids)) for m in edges] == [
        (GPT2, ["edge-a", "edge-b", "edge-d"]), (other_build, ["edge-c"])]

    everything = (await core.stub.ListModels(cmp_pb2.ListModelsRequest(), timeout=5)).models
    assert [(m.model.name, list(m.node_ids)) for m in everything] == [
        ("gpt2-edge", ["edge-a", "edge-b", "edge-d"]), ("gpt2-edge", ["edge-c"]), ("llama", ["cloud-a"])]


# --- the store through the servicer --------------------------------------------------------


async def test_published_version_is_listed_and_described(core: Core) -> None:
    published = await core.publish("gpt2-edge", "v2", ONNX)
    assert published.sha256 == hashlib.sha256(b"weightsgpt2-edgev2").hexdigest()

    listed = await core.stub.ListModelVersions(cmp_pb2.ListModelVersionsRequest(name="gpt2-edge"), timeout=5)
    assert [(m.name, m.version, m.kind) for m in listed.manifests] == [("gpt2-edge", "v2", ONNX)]
    described = await core.stub.DescribeModelVersion(
        cmp_pb2.DescribeModelVersionRequest(name="gpt2-edge", version="v2"), timeout=5)
    assert described.manifest == published
    missing = core.stub.DescribeModelVersion(cmp_pb2.DescribeModelVersionRequest(name="gpt2-edge", version="v9"),
                                             timeout=5)
    assert await status_code(missing) == grpc.StatusCode.NOT_FOUND


# --- DeployModel: refusals queue nothing ---------------------------------------------------


async def test_deploy_to_an_unknown_node_is_not_found_and_queues_nothing(core: Core) -> None:
    await core.publish("gpt2-edge", "v2", ONNX)
    assert await status_code(deploy(core, "gpt2-edge", "v2", "edge-a", "edge-zz")) == grpc.StatusCode.NOT_FOUND
    assert core.commands("edge-a") == []


async def test_deploy_of_an_unknown_version_is_not_found(core: Core) -> None:
    assert await status_code(deploy(core, "gpt2-edge", "v404")) == grpc.StatusCode.NOT_FOUND
    assert core.commands("edge-a") == [] and core.commands("edge-b") == []


async def test_deploy_of_a_checkpoint_is_refused_and_queues_nothing(core: Core) -> None:
    await core.publish("llama", "v2", CKPT)
    assert await status_code(deploy(core, "llama", "v2", "cloud-a")) == grpc.StatusCode.FAILED_PRECONDITION
    assert core.commands("cloud-a") == []


async def test_deploy_to_a_node_of_the_wrong_role_is_refused_for_every_target(core: Core) -> None:
    await core.publish("gpt2-edge", "v2", ONNX)
    call = deploy(core, "gpt2-edge", "v2", "edge-a", "cloud-a")  # one good target, one wrong: all or none
    assert await status_code(call) == grpc.StatusCode.FAILED_PRECONDITION
    assert core.commands("edge-a") == [] and core.commands("cloud-a") == []


async def test_adapter_for_another_base_model_is_refused(core: Core) -> None:
    await core.publish("llama-lora", "v1", LORA, base_model="mistral")
    assert await status_code(deploy(core, "llama-lora", "v1")) == grpc.StatusCode.FAILED_PRECONDITION
    assert core.commands("cloud-a") == []


async def test_deploy_with_an_edge_only_role_for_no_edges_is_refused(tmp_path: Path) -> None:
    registry = NodeRegistry(heartbeat_interval_s=60)
    registry.register(node("cloud-a", CLOUD, LLAMA))
    async with serve(ComputePlaneServicer(registry, ModelStore(tmp_path / "store"))) as stub:
        await Core(stub, registry, tmp_path).publish("gpt2-edge", "v2", ONNX)
        call = stub.DeployModel(cmp_pb2.DeployModelRequest(name="gpt2-edge", version="v2"), timeout=5)
        assert await status_code(call) == grpc.StatusCode.FAILED_PRECONDITION


# --- DeployModel, RollbackModel, GetDeploymentStatus: the happy path -------------------------


async def test_deploy_queues_a_command_per_target_and_status_shows_it_pending(core: Core) -> None:
    manifest = await core.publish("gpt2-edge", "v2", ONNX)
    reply = await deploy(core, "gpt2-edge", "v2")  # no node ids: every node of the version's role

    assert [n.node_id for n in reply.nodes] == ["edge-a", "edge-b"]
    wanted = common_pb2.ModelRef(name="gpt2-edge", version="v2", sha256=manifest.sha256, kind=ONNX)
    for answered in reply.nodes:
        assert answered.serving == GPT2
        [state] = answered.deployments
        assert (state.phase, state.model, state.rollback) == (PENDING, wanted, False)
        [command] = core.commands(answered.node_id)  # what the node's next heartbeat carries
        assert command.command_id == state.command_id and command.deploy.model == wanted

    status = await core.stub.GetDeploymentStatus(cmp_pb2.GetDeploymentStatusRequest(node_id="edge-a"), timeout=5)
    [edge_a] = status.nodes
    assert [(d.command_id, d.phase) for d in edge_a.deployments] == [(reply.nodes[0].deployments[0].command_id,
                                                                       PENDING)]
    assert core.commands("cloud-a") == []


async def test_adapter_deploy_names_its_base_model(core: Core) -> None:
    manifest = await core.publish("llama-lora", "v1", LORA, base_model="llama")
    [answered] = (await deploy(core, "llama-lora", "v1")).nodes  # the adapter's role: every cloud
    [command] = core.commands("cloud-a")
    assert answered.node_id == "cloud-a" and command.command_id == answered.deployments[0].command_id
    assert command.deploy.model == common_pb2.ModelRef(name="llama-lora", version="v1", sha256=manifest.sha256,
                                                       kind=LORA, base_model="llama")


async def test_status_prefers_what_the_node_reports_over_the_pending_command(core: Core) -> None:
    await core.publish("gpt2-edge", "v2", ONNX)
    command_id = (await deploy(core, "gpt2-edge", "v2", "edge-a")).nodes[0].deployments[0].command_id
    reported = common_pb2.DeploymentState(command_id=command_id, phase=common_pb2.DEPLOYMENT_PHASE_SERVING)
    core.registry.heartbeat("edge-a", common_pb2.NodeLoad(models_served=[GPT2], deployments=[reported]))

    status = await core.stub.GetDeploymentStatus(cmp_pb2.GetDeploymentStatusRequest(), timeout=5)
    by_node = {n.node_id: list(n.deployments) for n in status.nodes}
    assert by_node == {"cloud-a": [], "edge-a": [reported], "edge-b": []}


async def test_rollback_queues_a_rollback_shown_pending(core: Core) -> None:
    reply = await core.stub.RollbackModel(cmp_pb2.RollbackModelRequest(node_id="edge-b"), timeout=5)
    [state] = reply.node.deployments
    assert (reply.node.node_id, state.phase, state.rollback) == ("edge-b", PENDING, True)
    [command] = core.commands("edge-b")
    assert command.HasField("rollback") and command.command_id == state.command_id


async def test_status_and_rollback_of_an_unknown_node_are_not_found(core: Core) -> None:
    status = core.stub.GetDeploymentStatus(cmp_pb2.GetDeploymentStatusRequest(node_id="edge-zz"), timeout=5)
    assert await status_code(status) == grpc.StatusCode.NOT_FOUND
    rollback = core.stub.RollbackModel(cmp_pb2.RollbackModelRequest(node_id="edge-zz"), timeout=5)
    assert await status_code(rollback) == grpc.StatusCode.NOT_FOUND


# --- the servicer needs only the narrow NodeDirectory --------------------------------------


@dataclass
class TinyDirectory:
    """Exactly the three methods of ``cmp.nodes.NodeDirectory``, nothing else of the registry."""

    nodes: dict[str, common_pb2.NodeStatus]
    queued: list[tuple[str, cp_pb2.NodeCommand]] = field(default_factory=list)

    def statuses(self, role: int = common_pb2.NODE_ROLE_UNSPECIFIED) -> list[common_pb2.NodeStatus]:
        return [s for _, s in sorted(self.nodes.items()) if role in (common_pb2.NODE_ROLE_UNSPECIFIED, s.info.role)]

    def node_status(self, node_id: str) -> common_pb2.NodeStatus:
        if node_id not in self.nodes:
            raise NotFound(f"node {node_id!r} is not registered")
        return self.nodes[node_id]

    def queue_command(self, node_id: str, command: cp_pb2.NodeCommand) -> None:
        self.queued.append((node_id, command))


async def test_servicer_works_against_any_node_directory(tmp_path: Path) -> None:
    directory = TinyDirectory({n: common_pb2.NodeStatus(info=node(n, EDGE, GPT2)) for n in ("e1", "e2")})
    async with serve(ComputePlaneServicer(directory, ModelStore(tmp_path / "store"))) as stub:
        models = (await stub.ListModels(cmp_pb2.ListModelsRequest(), timeout=5)).models
        assert [(m.model, list(m.node_ids)) for m in models] == [(GPT2, ["e1", "e2"])]

        await Core(stub, NodeRegistry(), tmp_path).publish("gpt2-edge", "v2", ONNX)
        reply = await stub.DeployModel(cmp_pb2.DeployModelRequest(name="gpt2-edge", version="v2",
                                                                  node_ids=["e2"]), timeout=5)
        [(node_id, command)] = directory.queued
        assert (node_id, command.command_id) == ("e2", reply.nodes[0].deployments[0].command_id)
        assert command.deploy.model.version == "v2"
