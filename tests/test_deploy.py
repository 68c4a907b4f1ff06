"""Model deployment end to end on loopback: deploy, hot swap under load, failures, rollback, status,
core restart, resumed fetches, and the ``netgpt model`` commands. Real core store, real files."""

from __future__ import annotations

import asyncio
import tarfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from deploy_helpers import (
    EDGE,
    LORA,
    CuttingProxy,
    broken_edge_artifact,
    deploy,
    lora_artifact,
    node_status,
    padded_edge_artifact,
    pickled_adapter_tar,
    pickled_bytes,
    publish,
    rollback,
    settled,
    tar_with,
    wider_llama,
)
from harness import Cluster, start_cluster
from helpers import captured_events, cli, concise, eventually, generate, new_session
from slow_model import Gate, SlowModel
from throwaway_ca import tls

from cmp.archive import unpack
from cmp.deployer import Deployer
from cmp.node_kit import RetryPolicy
from core.daemon import start_core
from edge_node.model.artifact import build_edge_artifact
from edge_node.model.deployer import edge_loader
from netgpt.channels import open_channel
from netgpt.config import CoreConfig
from netgpt.engine import ModelLoadError
from netgpt.errors import NetGptError
from netgpt.model_slot import ModelSlot, Served
from netgpt.v1 import common_pb2
from netgpt.v1 import compute_plane_pb2 as cmp_pb2
from netgpt.v1 import compute_plane_pb2_grpc as cmp_grpc
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import user_plane_pb2 as up_pb2
from up.convert import model_ref

MiB = 1 << 20
SERVING, FAILED = common_pb2.DEPLOYMENT_PHASE_SERVING, common_pb2.DEPLOYMENT_PHASE_FAILED
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
ERR = grpc.aio.AioRpcError


@dataclass(frozen=True)
class Artifacts:
    edge: Path  # export-edge of the tiny GPT-2: parity-checked ONNX + tokenizer + config
    broken_edge: Path  # model.onnx is garbage
    pickled_edge: Path  # carries a pytorch_model.bin
    lora: Path  # an adapter for the tiny LLaMA
    misfit_lora: Path  # an adapter for a LLaMA of another hidden size
    pickled_lora: Path  # adapter_model.bin instead of safetensors
    lora_dir: Path


@pytest.fixture(scope="module")
def artifacts(tiny, models, tmp_path_factory) -> Artifacts:
    root = tmp_path_factory.mktemp("artifacts")
    edge = build_edge_artifact(tiny.gpt2_dir, root / "edge.tar").path
    lora_dir = root / "lora"
    return Artifacts(
        edge=edge,
        broken_edge=broken_edge_artifact(edge, root / "broken.tar"),
        pickled_edge=tar_with(root / "pickled-edge.tar", {"config.json": (tiny.gpt2_dir / "config.json").read_bytes(),
                                                          "pytorch_model.bin": pickled_bytes()}),
        lora=lora_artifact(tiny.llama_dir, lora_dir, root / "lora.tar", seed=3),
        misfit_lora=lora_artifact(wider_llama(tiny, root / "wide"), root / "misfit", root / "misfit.tar"),
        pickled_lora=pickled_adapter_tar(lora_dir, root / "pickled-lora.tar"),
        lora_dir=lora_dir,
    )


async def deploy_cluster(models, tmp_path: Path, delay_s: float = 0.0, concurrency: int = 4) -> Cluster:
    """A cluster with its own store and deploy folders; ``delay_s`` slows both initial models
    (per token) so requests are still running when a deploy swaps the model."""
    gpt2, llama = models
    if delay_s:
        gpt2, base_dir = SlowModel(gpt2, delay_s), llama.base_dir
        llama = SlowModel(llama, delay_s)
        llama.base_dir = base_dir  # where deployed adapters load their base from
    node = {"max_concurrency": concurrency, "max_queue": 64}
    return await start_cluster(
        gpt2, llama, heartbeat_interval_s=0.2, core={"store_dir": str(tmp_path / "store")},
        cloud={**node, "deploy_dir": str(tmp_path / "cloud-deploy")},
        edge={**node, "deploy_dir": str(tmp_path / "edge-deploy"), "answer_cache_ttl_s": 0.0, "intent_tokens": 4,
              "cloud_token_timeout_s": 120.0})  # a request held at a gate must not time out to the edge


@asynccontextmanager
async def compute_plane(cluster: Cluster) -> AsyncIterator[cmp_grpc.ComputePlaneServiceStub]:
    async with open_channel(cluster.core.address) as channel:
        yield cmp_grpc.ComputePlaneServiceStub(channel)


async def ask(cluster: Cluster, task: int, prompt: str = "Where is the harbour?") -> up_pb2.GenerationSummary:
    session = await new_session(cluster.core.address)
    events = await generate(cluster.edge.address, concise(session, prompt, max_new_tokens=8, task=task))
    return events[-1].summary



@dataclass
class Outcome:
    started: float
    ended: float
    summary: up_pb2.GenerationSummary | None = None
    error: BaseException | None = None


async def test_hot_swap_under_load_no_failures_and_new_requests_use_the_new_versions(tiny_models, artifacts, tmp_path):
    """Users keep asking while both nodes swap models. Two requests are held mid-generation on the
    old models by closed gates across the swap, so "in-flight requests finish on the old model"
    is checked without timing windows; requests started after a swap was seen use the new one."""
    cluster = await deploy_cluster(tiny_models, tmp_path, delay_s=0.01, concurrency=12)  # held + users + one more
    edge_model, cloud_model = cluster.edge.slot.current.model, cluster.cloud.slot.current.model
    outcomes: list[Outcome] = []
    stop = asyncio.Event()

    async def user(index: int) -> None:
        session = await new_session(cluster.core.address)
        n = 0
        while not stop.is_set():
            n += 1
            task = up_pb2.TASK_CLASS_LOOKUP if (index + n) % 2 else up_pb2.TASK_CLASS_CHAT  # edge / cloud answers
            request = concise(session, f"Where is venue {index}-{n}?", max_new_tokens=20, task=task)
            outcome = Outcome(started=time.monotonic(), ended=0.0)
            try:
                outcome.summary = (await generate(cluster.edge.address, request))[-1].summary
            except Exception as exc:
                outcome.error = exc
            outcome.ended = time.monotonic()
            outcomes.append(outcome)

    async def held(task: int, gate: Gate) -> asyncio.Task[up_pb2.GenerationSummary]:
        """A request generating on the old model (the only one at ``gate``), stopped there until it opens."""
        running = asyncio.create_task(ask(cluster, task))
        await eventually(lambda: gate.waiting == 1, "a request to wait at the gate")
        return running

    try:
        old_edge, old_cloud = cluster.edge.slot.current.ref, cluster.cloud.slot.current.ref
        async with compute_plane(cluster) as stub:
            await publish(stub, artifacts.edge, "gpt2-edge", "v2", EDGE, base_model="gpt2")
            await publish(stub, artifacts.lora, "lora-city", "v1", LORA, base_model=old_cloud.name)
            cloud_model.gate.close()
            on_old_cloud = await held(up_pb2.TASK_CLASS_CHAT, cloud_model.gate)
            edge_model.gate.close()
            on_old_edge = await held(up_pb2.TASK_CLASS_LOOKUP, edge_model.gate)
            users = [asyncio.create_task(user(i)) for i in range(6)]  # they queue at the edge gate too
            commands = {**await deploy(stub, "gpt2-edge", "v2"), **await deploy(stub, "lora-city", "v1")}
            swapped: dict[str, float] = {}
            for node, name in ((cluster.edge, "gpt2-edge"), (cluster.cloud, "lora-city")):
                await eventually(lambda: node.slot.current.ref.name == name,  # noqa: B023 - awaited here
                                 f"{name} to serve", timeout_s=60)
                swapped[name] = time.monotonic()
            # new models, while the held ones still wait (another prompt: an identical one would share the held call)
            after_swap = await ask(cluster, up_pb2.TASK_CLASS_CHAT, "Where is the station?")
            edge_model.gate.open()
            cloud_model.gate.open()
            held_edge, held_cloud = await on_old_edge, await on_old_cloud
            await eventually(lambda: sum(o.started > swapped["lora-city"] for o in outcomes) >= 6,
                             "users to be answered after the swap", timeout_s=60)
            stop.set()
            await asyncio.gather(*users)
            states = {node: await settled(stub, node, command) for node, command in commands.items()}
    finally:
        stop.set()
        edge_model.gate.open()
        cloud_model.gate.open()
        await cluster.stop()

    assert {node: s.phase for node, s in states.items()} == {"edge-1": SERVING, "cloud-1": SERVING}
    assert [o.error for o in outcomes if o.error] == []
    assert held_edge.edge_model == old_edge, "a request generating at the edge swap finishes on the old model"
    assert held_cloud.terminated_at == common_pb2.NODE_ROLE_CLOUD and held_cloud.cloud_model == old_cloud
    assert after_swap.edge_model.version == "v2" and after_swap.cloud_model.name == "lora-city"

    new_edge = [o.summary.edge_model for o in outcomes if o.started > swapped["gpt2-edge"]]
    assert new_edge and all((m.name, m.version, m.kind) == ("gpt2-edge", "v2", EDGE) for m in new_edge)
    cloud_answers = [o for o in outcomes if o.summary.terminated_at == common_pb2.NODE_ROLE_CLOUD]
    new_cloud = [o.summary.cloud_model for o in cloud_answers if o.started > swapped["lora-city"]]
    assert new_cloud and all((m.name, m.version, m.kind, m.base_model) == ("lora-city", "v1", LORA, old_cloud.name)
                             for m in new_cloud)


async def test_broken_model_keeps_the_old_one_serving_and_rollback_restores(tiny_models, artifacts, tmp_path):
    cluster = await deploy_cluster(tiny_models, tmp_path)
    original = cluster.edge.slot.current.ref
    try:
        async with compute_plane(cluster) as stub:
            v2 = await publish(stub, artifacts.edge, "gpt2-edge", "v2", EDGE)
            await publish(stub, artifacts.broken_edge, "gpt2-edge", "v3", EDGE)
            deployed = await settled(stub, "edge-1", (await deploy(stub, "gpt2-edge", "v2"))["edge-1"])
            assert deployed.phase == SERVING and deployed.model == v2 and not deployed.error
            assert (await ask(cluster, up_pb2.TASK_CLASS_LOOKUP)).edge_model == v2

            failed = await settled(stub, "edge-1", (await deploy(stub, "gpt2-edge", "v3"))["edge-1"])
            assert failed.phase == FAILED and failed.error_code == PRECONDITION.value[0]
            assert "ONNX Runtime" in failed.error and "\n" not in failed.error
            assert cluster.edge.slot.current.ref == v2
            assert (await ask(cluster, up_pb2.TASK_CLASS_LOOKUP)).edge_model == v2  # the old one keeps serving
            status = await node_status(stub, "edge-1")
            assert status.serving == v2
            assert [(s.model.version, s.phase) for s in status.deployments] == [("v3", FAILED), ("v2", SERVING)]

            restored = await settled(stub, "edge-1", await rollback(stub, "edge-1"))
            assert restored.phase == SERVING and restored.rollback and restored.model == original
            assert (await ask(cluster, up_pb2.TASK_CLASS_LOOKUP)).edge_model == original
            status = await node_status(stub, "edge-1")
            assert status.serving == original
            assert [s.phase for s in status.deployments] == [SERVING, FAILED, common_pb2.DEPLOYMENT_PHASE_ROLLED_BACK]

            again = await settled(stub, "edge-1", await rollback(stub, "edge-1"))
            assert again.phase == FAILED and again.error_code == PRECONDITION.value[0]
            assert "no previous version" in again.error
    finally:
        await cluster.stop()
    deploy_dir = tmp_path / "edge-deploy"
    leftovers = [p for d in ("staging", "models") if (deploy_dir / d).exists() for p in (deploy_dir / d).iterdir()]
    assert leftovers == [] and list((deploy_dir / "artifacts").iterdir()) == []  # nothing half-done stays


async def test_adapter_that_does_not_fit_is_failed_precondition(tiny_models, artifacts, tmp_path):
    cluster = await deploy_cluster(tiny_models, tmp_path)
    original = cluster.cloud.slot.current.ref
    try:
        async with compute_plane(cluster) as stub:
            await publish(stub, artifacts.lora, "lora-city", "for-other", LORA, base_model="other-llama")
            with pytest.raises(ERR) as err:  # checked at the core from the manifest: nothing sent
                await deploy(stub, "lora-city", "for-other")
            assert err.value.code() == PRECONDITION and "'other-llama'" in err.value.details()
            assert list((await node_status(stub, "cloud-1")).deployments) == []

            await publish(stub, artifacts.misfit_lora, "lora-city", "misfit", LORA, base_model=original.name)
            failed = await settled(stub, "cloud-1", (await deploy(stub, "lora-city", "misfit"))["cloud-1"])
            assert failed.phase == FAILED and failed.error_code == PRECONDITION.value[0]
            assert "does not fit" in failed.error
            assert (await ask(cluster, up_pb2.TASK_CLASS_CHAT)).cloud_model == original

            await publish(stub, artifacts.edge, "gpt2-edge", "v2", EDGE)
            await publish(stub, artifacts.edge, "gpt2-full", "v1", common_pb2.MODEL_KIND_CHECKPOINT)
            for name, version, nodes, needle in (("gpt2-edge", "v2", ("cloud-1",), "is a cloud node"),
                                                 ("gpt2-full", "v1", (), "checkpoint")):
                with pytest.raises(ERR) as err:
                    await deploy(stub, name, version, nodes)
                assert err.value.code() == PRECONDITION and needle in err.value.details()
            for name, version, nodes in (("gpt2-edge", "v9", ()), ("gpt2-edge", "v2", ("edge-9",))):
                with pytest.raises(ERR) as err:
                    await deploy(stub, name, version, nodes)
                assert err.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        await cluster.stop()


async def test_pickled_weights_are_refused(tiny_models, artifacts, tmp_path, capsys):
    cluster = await deploy_cluster(tiny_models, tmp_path)
    edge_before, cloud_before = cluster.edge.slot.current.ref, cluster.cloud.slot.current.ref
    try:
        async with compute_plane(cluster) as stub:
            await publish(stub, artifacts.pickled_edge, "gpt2-edge", "pickled", EDGE)
            await publish(stub, artifacts.pickled_lora, "lora-city", "pickled", LORA, base_model=cloud_before.name)
            for node, name in (("edge-1", "gpt2-edge"), ("cloud-1", "lora-city")):
                state = await settled(stub, node, (await deploy(stub, name, "pickled"))[node])
                assert state.phase == FAILED and "pickled weights" in state.error
        assert (cluster.edge.slot.current.ref, cluster.cloud.slot.current.ref) == (edge_before, cloud_before)
    finally:
        await cluster.stop()

    folder = tmp_path / "pickled-adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_bytes((artifacts.lora_dir / "adapter_config.json").read_bytes())
    (folder / "adapter_model.bin").write_bytes(pickled_bytes())
    code = await cli("model", "publish", str(folder), "--name", "lora-city", "--version", "p", "--kind", "lora-adapter",
                     "--base-model", "llama", "--core", "127.0.0.1:1")
    assert code == 2 and "safetensors" in capsys.readouterr().err


def test_model_slot_swaps_for_new_readers_and_rolls_back_one_level(models):
    gpt2, llama = models
    first, second = Served(gpt2, model_ref(gpt2.identity, EDGE)), Served(llama, model_ref(llama.identity, LORA))
    slot = ModelSlot(first)
    pinned = slot.current  # what a running request holds
    assert slot.swap(second) is first and slot.previous is first
    assert pinned is first and slot.current is second  # the running request kept its model; new ones get the new one
    assert slot.rollback() is first and slot.current is first and slot.previous is None
    with pytest.raises(NetGptError, match="no previous version"):
        slot.rollback()


def test_unpack_refuses_unsafe_archives(tmp_path: Path):
    for index, (name, needle) in enumerate((("../escape.txt", "outside"), ("weights.pt", "pickled"))):
        archive = tar_with(tmp_path / f"{index}.tar", {name: b"x"})
        with pytest.raises(ModelLoadError, match=needle):
            unpack(archive, tmp_path / f"out-{index}")
        assert not (tmp_path / f"out-{index}").exists()
    absolute = unpack(tar_with(tmp_path / "abs.tar", {"/etc/evil": b"x"}), tmp_path / "out-abs")
    assert absolute == tmp_path / "out-abs" / "etc" and (absolute / "evil").read_bytes() == b"x"  # kept inside
    link = tmp_path / "link.tar"
    with tarfile.open(link, "w") as tar:
        info = tarfile.TarInfo("model.onnx")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(ModelLoadError):
        unpack(link, tmp_path / "out-link")


async def test_core_restart_keeps_the_store_and_nodes_report_their_versions(tiny_models, artifacts, tmp_path):
    cluster = await deploy_cluster(tiny_models, tmp_path)
    original = cluster.edge.slot.current.ref
    try:
        async with compute_plane(cluster) as stub:
            v2 = await publish(stub, artifacts.edge, "gpt2-edge", "v2", EDGE)
            assert (await settled(stub, "edge-1", (await deploy(stub, "gpt2-edge", "v2"))["edge-1"])).phase == SERVING
        address = cluster.core.address
        await cluster.core.stop(0)
        cluster.core = await start_core(CoreConfig(**tls("core", "core"), listen=address, heartbeat_interval_s=0.2,
                                                   store_dir=str(tmp_path / "store")))
        await eventually(lambda: any(s.load.models_served
                                     for s in cluster.core.registry.statuses(common_pb2.NODE_ROLE_EDGE)),
                         "the edge to re-register and heartbeat (the cloud may come back first)")
        async with compute_plane(cluster) as stub:
            listed = await stub.ListModelVersions(cmp_pb2.ListModelVersionsRequest(), timeout=5)
            assert [(m.name, m.version, m.sha256) for m in listed.manifests] == [("gpt2-edge", "v2", v2.sha256)]
            served = await stub.ListModels(cmp_pb2.ListModelsRequest(role=common_pb2.NODE_ROLE_EDGE), timeout=5)
            assert [(m.model.version, list(m.node_ids)) for m in served.models] == [("v2", ["edge-1"])]
            status = await node_status(stub, "edge-1")
            assert status.serving == v2 and status.deployments[0].phase == SERVING
            assert cluster.core.registry.get("edge-1").info.capabilities.models[0] == v2  # re-registered as v2
            restored = await settled(stub, "edge-1", await rollback(stub, "edge-1"))  # the new core can command
            assert restored.phase == SERVING and restored.model == original
    finally:
        await cluster.stop()


async def test_connection_dropped_mid_fetch_resumes_from_the_partial_file(tiny_models, artifacts, tmp_path):
    core = await start_core(CoreConfig(**tls("core", "core"), listen="127.0.0.1:0", store_dir=str(tmp_path / "store")))
    proxy = await CuttingProxy(core.address, cut_after=3 * MiB + MiB // 2).start()
    gpt2 = tiny_models[0]
    slot = ModelSlot(Served(gpt2, model_ref(gpt2.identity, EDGE)))
    deployer = Deployer(slot, EDGE, edge_loader("cpu"), proxy.address, tmp_path / "deploy",
                        retry=RetryPolicy(first_backoff_s=0.05))
    try:
        artifact = padded_edge_artifact(artifacts.edge, tmp_path / "padded.tar", 6 * MiB)
        size = artifact.stat().st_size
        async with open_channel(core.address) as channel:
            ref = await publish(cmp_grpc.ComputePlaneServiceStub(channel), artifact, "gpt2-edge", "big", EDGE)
        with captured_events() as logs:
            assert deployer.handle(cp_pb2.NodeCommand(command_id="c1", deploy=cp_pb2.DeployCommand(model=ref)))
            await deployer.idle()
        state = deployer.states()[0]
        assert (state.phase, state.error) == (SERVING, "") and slot.current.ref == ref
        assert state.bytes_done == state.bytes_total == size
        assert proxy.cuts == 1 and deployer.fetcher.attempts == 2
        retries = [e for e in logs if e["event"] == "deploy.fetch.retry"]
        assert len(retries) == 1 and retries[0]["resume_from"] >= MiB  # whole chunks on disk before the cut
        assert proxy.downstream_bytes < size + 3 * MiB  # resumed; starting over would cost size + 3.5 MiB
    finally:
        await deployer.close()
        await proxy.close()
        await core.stop(0)


async def test_cli_export_publish_deploy_status_rollback(tiny_models, tiny, tmp_path, capsys):
    cluster = await deploy_cluster(tiny_models, tmp_path)
    core = cluster.core.address
    original = cluster.edge.slot.current.ref

    async def netgpt(*argv: str) -> int:
        return await cli(*argv, "--core", core)

    try:
        assert await netgpt("model", "export-edge", str(tiny.gpt2_dir), "--out", str(tmp_path / "edge.tar"),
                            "--publish", "--name", "gpt2-edge", "--version", "v9") == 0
        assert await netgpt("model", "list") == 0
        assert await netgpt("model", "show", "gpt2-edge", "v9") == 0
        assert await netgpt("model", "deploy", "gpt2-edge", "v9", "--wait") == 0
        assert cluster.edge.slot.current.ref.version == "v9"
        assert await netgpt("model", "status", "--node", "edge-1") == 0
        assert await netgpt("model", "rollback", "edge-1", "--wait") == 0
        assert cluster.edge.slot.current.ref == original
        assert await netgpt("model", "fetch", "gpt2-edge", "v9", "--out", str(tmp_path / "copy.tar")) == 0
        assert (tmp_path / "copy.tar").read_bytes() == (tmp_path / "edge.tar").read_bytes()
        assert await netgpt("model", "show", "gpt2-edge", "v404") == 1
        assert await netgpt("model", "export-edge", str(tiny.gpt2_dir), "--out", str(tmp_path / "edge-int8.tar"),
                            "--quantization", "int8", "--publish", "--name", "gpt2-edge", "--version", "v10") == 0
        assert await netgpt("model", "show", "gpt2-edge", "v10") == 0
    finally:
        await cluster.stop()
    out = capsys.readouterr().out
    shown = out.rsplit("published gpt2-edge v10", 1)[1]  # the int8 graph, with the quality gate's figures
    assert "int8" in shown and "gate_whole_text_greedy_agreement" in shown, shown
    assert "greedy tokens identical" in out and "published gpt2-edge v9 (onnx-edge" in out
    assert "KiB" in out and "parity_max_abs_diff" in out
    assert "edge-1: deploy gpt2-edge v9: serving" in out and "edge-1 (edge) serves gpt2-edge v9" in out
    assert "edge-1: rollback" in out and ": serving" in out.rsplit("rollback queued", 1)[1]
