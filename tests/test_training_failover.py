"""Jobs and nodes that go away (issue 27): a trainer worker dies with its node process, a job folder
takes one trainer at a time, a silent node is marked lost and its job moves to another node of the
role and resumes from the checkpoint it uploaded to the store, a returning node gets a cancel and
cannot publish, a job with nowhere to go fails with the reason, lost nodes are listed apart and
dropped after the retention time. Real core and nodes on loopback, real worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from deploy_helpers import publish
from harness import Cluster, start_cluster
from helpers import cli, eventually
from test_training_jobs import Clients, expect_error, spec, write_dataset
from throwaway_ca import identity, tls

from cloud_node.daemon import start_cloud
from cmp.records import checkpoint_model
from cmp.transfer_client import publish_file
from cmp.transfer_io import TransferStub
from cp.registry import NodeRegistry
from edge_node.daemon import load_knowledge, start_edge
from netgpt.channels import open_channel
from netgpt.config import CloudConfig, EdgeConfig
from netgpt.errors import FailedPrecondition
from netgpt.training.guards import folder_lock
from netgpt.v1 import common_pb2
from netgpt.v1 import compute_plane_pb2 as cmp_pb2
from netgpt.v1 import training_pb2 as tr_pb2
from node.runtime import NodeHandle

T = tr_pb2
S = common_pb2
REPO = Path(__file__).resolve().parents[1]

# --- the worker and the job folder ------------------------------------------------------------------

PARENT = """
import asyncio, sys, time
from pathlib import Path
from netgpt.training.trainer import TrainConfig
from netgpt.training.worker import TrainingProcess

async def main() -> None:
    worker = TrainingProcess()
    worker.start(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]),
                 TrainConfig(method="full", max_steps=1_000_000, batch_size=2, threads=1))
    async for progress in worker.progress():
        if progress.step >= 1:
            print(worker.pid, flush=True)
            break
    time.sleep(600)  # a node that hangs on, until the test kills it with -9

asyncio.run(main())
"""


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting for a reaper counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_kill_9_the_parent_and_its_worker_dies_and_frees_the_job_folder(tiny, tmp_path):
    data, work = write_dataset(tmp_path / "rows.jsonl"), tmp_path / "work"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(tiny.gpt2_dir), str(data), str(work)],
                              cwd=REPO, stdout=subprocess.PIPE, text=True)
    worker = 0
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        assert line.strip().isdigit(), f"the parent exited ({parent.poll()}) before its worker trained a step"
        worker = int(line)
        assert _running(worker)
        with pytest.raises(FailedPrecondition, match=f"another trainer \\(pid {worker}\\)"):
            with folder_lock(work, wait_s=0):  # the worker holds it while it trains
                pass
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 30
        while _running(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _running(worker), "the worker outlived the process that started it"
        with folder_lock(work, wait_s=5):  # the kernel let go of the dead worker's lock
            pass
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if worker and _running(worker):  # the failure above: do not leave it training
            os.kill(worker, signal.SIGKILL)


def test_a_second_trainer_on_one_job_folder_is_refused(tiny, tmp_path):
    from netgpt.training.trainer import TrainConfig, train

    data, work = write_dataset(tmp_path / "rows.jsonl"), tmp_path / "work"
    with folder_lock(work):
        with pytest.raises(FailedPrecondition, match=f"pid {os.getpid()}") as info:
            train(tiny.gpt2_dir, data, work, TrainConfig(method="full", max_steps=2, batch_size=2, threads=1))
    assert "two trainers never write one job folder" in str(info.value)
    assert not (work / "checkpoints").exists() and not (work / "output").exists()  # nothing was written


# --- the registry: lost, then dropped ---------------------------------------------------------------


def test_a_silent_node_is_stale_then_lost_then_dropped_and_comes_back_serving():
    now = [0.0]
    registry = NodeRegistry(heartbeat_interval_s=1.0, clock=lambda: now[0], wall=lambda: 1e9,
                            lost_after_s=10.0, retention_s=60.0)
    for node_id in ("cloud-a", "cloud-b"):
        registry.register(S.NodeInfo(node_id=node_id, role=S.NODE_ROLE_CLOUD, address="127.0.0.1:1"))

    def health() -> dict[str, str]:
        return {s.info.node_id: S.NodeHealth.Name(s.health) for s in registry.statuses()}

    now[0] = 5.0
    registry.heartbeat("cloud-b", S.NodeLoad())
    assert health() == {"cloud-a": "NODE_HEALTH_STALE", "cloud-b": "NODE_HEALTH_SERVING"}
    now[0] = 12.0
    assert registry.sweep() == []
    assert health()["cloud-a"] == "NODE_HEALTH_LOST"
    registry.heartbeat("cloud-a", S.NodeLoad())  # a lost node that comes back serves again
    assert health()["cloud-a"] == "NODE_HEALTH_SERVING"
    now[0] = 66.0  # cloud-b silent 61 s, cloud-a 54 s: only cloud-b is past the retention time
    assert registry.sweep() == ["cloud-b"]
    assert list(health()) == ["cloud-a"]
    with pytest.raises(Exception, match="not registered"):
        registry.heartbeat("cloud-b", S.NodeLoad())  # it must register again


# --- the cluster: a lost node's job moves, the node comes back ------------------------------------


@pytest.fixture(scope="module")
def tiny_models(tiny):
    from appkit.all_in_one import load_models

    return load_models("tiny", "tiny")


@pytest.fixture(scope="module")
async def cluster(tiny_models, tmp_path_factory) -> AsyncIterator[Cluster]:
    """Core (nodes lost after 1.5 s of silence, jobs failed after 3 s with no node), cloud-1 and edge-1
    started from the tiny models' folders."""
    root = tmp_path_factory.mktemp("failover-nodes")
    running = await start_cluster(*tiny_models, heartbeat_interval_s=0.2,
                                  core={"node_lost_after_s": 1.5, "job_unplaced_timeout_s": 3.0,
                                        "node_retention_s": 3600.0},
                                  cloud={"model": "tiny", "deploy_dir": str(root / "cloud-1")},
                                  edge={"model": "tiny", "deploy_dir": str(root / "edge-1")})
    running.scratch.append(root)
    yield running
    await running.stop()


@pytest.fixture(scope="module")
async def clients(cluster) -> AsyncIterator[Clients]:
    async with open_channel(cluster.core.address) as channel:
        yield Clients(channel)


async def a_cloud(cluster: Cluster, tiny_models, node_id: str, deploy_dir: Path) -> NodeHandle:
    config = CloudConfig(**tls("cloud", node_id), node_id=node_id, listen="127.0.0.1:0", core=cluster.core.address,
                         model="tiny", deploy_dir=str(deploy_dir))
    node = await start_cloud(config, tiny_models[1])
    await eventually(lambda: node.agent.registered.is_set(), f"{node_id} to register")
    return node


async def stored_steps(clients: Clients, job_id: str) -> list[int]:
    reply = await clients.models.ListModelVersions(cmp_pb2.ListModelVersionsRequest(name=checkpoint_model(job_id)),
                                                   timeout=5)
    return sorted(int(m.metadata["training.step"]) for m in reply.manifests)


async def test_a_lost_nodes_job_resumes_on_another_node_and_the_node_that_returns_is_cancelled(
        cluster, clients, tiny_models, tmp_path):
    data = write_dataset(tmp_path / "rows.jsonl")
    await publish(clients.models, data, "rows", "v1", S.MODEL_KIND_DATASET)
    second = await a_cloud(cluster, tiny_models, "cloud-2", tmp_path / "cloud-2")
    nodes = {"cloud-1": cluster.cloud, "cloud-2": second}
    hp = T.HyperParameters(max_steps=2000, batch_size=2, checkpoint_every=25, threads=1, learning_rate=1e-3)
    job = await clients.start(spec(output_name="moved", output_version="v1", hyper_parameters=hp))
    lost_id = job.node_id
    other_id = next(n for n in nodes if n != lost_id)
    lost = nodes[lost_id]
    await eventually(lambda: _has_stored(clients, job.id), "a checkpoint of the job in the store", timeout_s=180)

    lost_dir = Path(lost.deployer.work_dir)  # type: ignore[union-attr]
    await lost.stop(0.5)  # the node goes silent; its worker dies with it, its job folder stays
    assert (lost_dir / "training" / job.id / "command.pb").exists()
    moved = await clients.until(job.id, lambda j: j.node_id == other_id, "the job to move to the other node",
                                timeout_s=60)
    assert moved.state in (S.TRAINING_STATE_PLACED, S.TRAINING_STATE_RUNNING)
    assert cluster.core.registry.node_status(lost_id).health == S.NODE_HEALTH_LOST

    # the node that lost the job may not publish its result (nor checkpoints) any more
    async with open_channel(cluster.core.address, identity("cloud", lost_id)) as channel:
        claim = cmp_pb2.ModelManifest(name="moved", version="v1", kind=S.MODEL_KIND_LORA_ADAPTER, base_model="llama",
                                      metadata={"lineage.job_id": job.id})
        artifact = tmp_path / "stale.tar"
        artifact.write_bytes(b"not the real adapter")
        details = await expect_error(publish_file(TransferStub(channel), claim, artifact),
                                     grpc.StatusCode.FAILED_PRECONDITION, job.id, lost_id)
        assert "no longer placed" in details or "may not publish" in details

    # the lost node comes back (same deploy dir): it resumes the job from its folder, and is told to cancel it
    config = CloudConfig(**tls("cloud", lost_id), node_id=lost_id, listen="127.0.0.1:0", core=cluster.core.address,
                         model="tiny", deploy_dir=str(lost_dir))
    returned = await start_cloud(config, tiny_models[1])
    nodes[lost_id] = returned
    if lost is cluster.cloud:
        cluster.cloud = returned
    try:
        record = returned.extras[-1].record(job.id)  # type: ignore[attr-defined]
        assert record is not None  # picked up from its folder on start
        await eventually(lambda: record.done, "the returning node to stop the job it lost", timeout_s=60)
        assert record.state == S.TRAINING_STATE_CANCELLED, record.error
        await eventually(lambda: not (lost_dir / "training" / job.id).exists(), "its job folder to be deleted")

        final = (await clients.watch(job.id, timeout_s=300))[-1]
        assert final.state == S.TRAINING_STATE_SUCCEEDED, final.error
        assert final.node_id == other_id and final.step == 2000
        resumed = nodes[other_id].extras[-1].record(job.id)  # type: ignore[attr-defined]
        assert resumed is not None and resumed.resumed_from_step > 0  # from the stored checkpoint, not step 0
        manifest = (await clients.models.DescribeModelVersion(
            cmp_pb2.DescribeModelVersionRequest(name="moved", version="v1"), timeout=5)).manifest
        assert manifest.metadata["lineage.job_id"] == job.id
    finally:
        for node in nodes.values():  # the returned node and cloud-2, unless one of them is the cluster's own
            if node is not cluster.cloud:
                await node.stop(0.5)


async def _has_stored(clients: Clients, job_id: str) -> bool:
    return bool(await stored_steps(clients, job_id))


async def test_a_job_with_no_node_to_move_to_fails_and_the_cli_lists_the_lost_node_apart(
        cluster, clients, tiny_models, tmp_path, capsys):
    await publish(clients.models, write_dataset(tmp_path / "rows.jsonl"), "rows-e", "v1", S.MODEL_KIND_DATASET)
    config = EdgeConfig(**tls("edge", "edge-9"), node_id="edge-9", listen="127.0.0.1:0", core=cluster.core.address,
                        model="tiny", deploy_dir=str(tmp_path / "edge-9"), profiles_db=":memory:",
                        popularity_model="none", intent_model="none")
    knowledge = load_knowledge(config)
    config.cells = sorted(knowledge.cells)
    edge = await start_edge(config, tiny_models[0], knowledge)
    await eventually(lambda: edge.agent.registered.is_set(), "edge-9 to register")
    job = await clients.start(spec(role=S.NODE_ROLE_EDGE, node_id="edge-9", dataset=T.StoredVersion(
        name="rows-e", version="v1"), output_name="nowhere", output_version="v1"))
    assert job.node_id == "edge-9"
    await edge.stop(0.2)

    await eventually(lambda: cluster.core.registry.node_status("edge-9").health == S.NODE_HEALTH_LOST,
                     "edge-9 to be marked lost")
    assert await cli("nodes", "--core", cluster.core.address) == 0
    out = capsys.readouterr().out
    table, _, lost = out.partition("LOST:")
    assert "edge-1" in table and "edge-9" not in table
    assert "edge-9" in lost and "edge-1" not in lost

    final = (await clients.watch(job.id, timeout_s=60))[-1]
    assert final.state == S.TRAINING_STATE_FAILED
    assert final.error_code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert "edge-9" in final.error and "to move to" in final.error
    assert final.node_id == ""
