"""Two core replicas on one PostgreSQL database, as processes: kill -9 one of them under load.

The nodes and the clients are given both addresses (``--core a,b``; each node starts at the replica
its id hashes to: the cloud at the first, the edge at the second). While a session storm runs and a
UE's answer streams, the first replica is killed with SIGKILL. Then: every
session the core acknowledged is still there, new sessions succeed within two heartbeat
intervals of the kill, the stream finishes, both nodes beat to the surviving replica (no node
restarted), and a command queued after the kill reaches its node.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import grpc
import pytest
from helpers import concise, eventually, kinds, new_session

from netgpt.channels import open_channel
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import control_plane_pb2_grpc as cp_grpc
from netgpt.v1 import user_plane_pb2 as up_pb2
from netgpt.v1 import user_plane_pb2_grpc as up_grpc

INTERVAL_S = 0.3
CELL = "cell-harbour-1"


class SessionStorm:
    """Sessions established back to back (8 at a time) through both addresses, each outcome timed."""

    def __init__(self, cores: str) -> None:
        self.cores = cores
        self.acknowledged: list[tuple[float, str]] = []  # (when, session id)
        self.failed: list[tuple[float, str]] = []  # (when, status code)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    async def _run(self) -> None:
        async with open_channel(self.cores) as channel:
            stub = cp_grpc.ControlPlaneServiceStub(channel)
            await asyncio.gather(*(self._one_lane(stub, lane) for lane in range(8)))

    async def _one_lane(self, stub: cp_grpc.ControlPlaneServiceStub, lane: int) -> None:
        number = 0
        while not self._stop.is_set():
            number += 1
            request = cp_pb2.EstablishSessionRequest(ue_id=f"ue-storm-{lane}-{number}", cell_id=CELL)
            try:
                reply = await stub.EstablishSession(request, timeout=2)
                self.acknowledged.append((time.monotonic(), reply.session.session_id))
            except grpc.aio.AioRpcError as exc:
                self.failed.append((time.monotonic(), exc.code().name))
                await asyncio.sleep(0.02)


class UeStream:
    """One Generate stream on a thread of its own, its events kept as they arrive."""

    def __init__(self, edge: str, request: up_pb2.GenerateRequest) -> None:
        self.edge, self.request = edge, request
        self.events: list[up_pb2.GenerateResponse] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self._thread.join(timeout=120)

    async def _run(self) -> None:
        try:
            async with open_channel(self.edge) as channel:
                async for event in up_grpc.UserPlaneServiceStub(channel).Generate(self.request, timeout=120):
                    self.events.append(event)
        except BaseException as exc:  # reported by the test
            self.error = exc


async def _sessions_found(address: str, session_ids: list[str]) -> int:
    async with open_channel(address) as channel:
        stub = cp_grpc.ControlPlaneServiceStub(channel)
        found = 0
        for session_id in session_ids:
            reply = await stub.GetSession(cp_pb2.GetSessionRequest(session_id=session_id), timeout=5)
            found += reply.session.session_id == session_id
        return found


@pytest.mark.e2e
def test_kill_9_one_of_two_replicas_under_a_session_storm_and_a_stream(tiny, tmp_path: Path, pg_url: str):
    from daemons import Daemon, cli, kill_all, node_daemons

    def core(name: str) -> Daemon:
        return Daemon("core", "--listen", "127.0.0.1:0", "--heartbeat-interval-s", str(INTERVAL_S),
                      "--store-dir", str(tmp_path / name), "--state-db", pg_url)

    first, second = core("a"), core("b")
    cores = f"{first.address},{second.address}"
    cloud, edge = node_daemons(cores, "r", CELL)
    daemons = [first, second, cloud, edge]
    try:
        edge.wait_for("edge.peers", where=lambda item: "cloud-r" in item["clouds"])
        # the second replica knows the nodes that beat to the first
        listed = cli("nodes", "--core", second.address)
        assert "edge-r" in listed.stdout and "cloud-r" in listed.stdout, listed

        storm = SessionStorm(cores)
        storm.start()
        asyncio.run(eventually(lambda: len(storm.acknowledged) >= 20, "sessions before the kill", timeout_s=30))
        session = asyncio.run(new_session(cores, CELL))
        stream = UeStream(edge.address, concise(session, "Where can I eat seafood tonight?", max_new_tokens=48))
        stream.start()
        asyncio.run(eventually(lambda: stream.events, "the UE's stream under way", timeout_s=60))
        killed_at = time.monotonic()
        first.proc.kill()  # kill -9: no drain, no goodbye
        first.proc.wait(timeout=30)
        asyncio.run(eventually(lambda: any(t > killed_at for t, _ in storm.acknowledged),
                               "a new session after the kill", timeout_s=30))
        asyncio.run(eventually(lambda: sum(t > killed_at for t, _ in storm.acknowledged) >= 20,
                               "sessions after the kill", timeout_s=30))
        storm.stop()
        stream.join()
        assert stream.error is None and kinds(stream.events)[-1] == "summary", (stream.error, kinds(stream.events))

        first_after = min(t for t, _ in storm.acknowledged if t > killed_at) - killed_at
        assert first_after <= 2 * INTERVAL_S + 2.0, first_after  # two intervals, plus a loaded CI machine's slack
        acknowledged = [session_id for _, session_id in storm.acknowledged]
        assert asyncio.run(_sessions_found(second.address, acknowledged)) == len(acknowledged)

        # both nodes moved to the surviving replica on their own, and a new command reaches them there
        for node_id in ("edge-r", "cloud-r"):
            second.wait_for("node.registered", where=lambda item, node_id=node_id: item.get("node_id") == node_id)
        assert all(node.proc.poll() is None for node in (edge, cloud))
        policy = cli("policy", "set", "--core", cores, "--max-cloud-queue", "9")
        assert policy.returncode == 0, policy
        edge.wait_for("edge.policy", where=lambda item: item.get("max_cloud_queue") == "9")
    finally:
        kill_all(daemons)


# --- work that outlives the replica it was started at (in process: the replica "dies" without
# --- releasing its lease or saying goodbye; the kill -9 above covers processes) ----------------------


async def _crash(core) -> None:
    """What kill -9 leaves: the port closed, the lease not released (it runs out), nothing flushed."""
    for task in (core.sweeper, core.watcher):
        task.cancel()
    await core.server.stop(0)
    core.stores.close()


@pytest.fixture
async def replicas_and_a_cloud(tiny, tmp_path: Path, pg_url: str):
    """Two in-process replicas on one database and one store directory (as on a shared volume), and a tiny
    cloud node given both addresses; the first replica holds the lease."""
    from throwaway_ca import tls

    from appkit.all_in_one import load_models
    from cloud_node.daemon import start_cloud
    from core.daemon import start_core
    from netgpt.config import CloudConfig, CoreConfig

    def core_config() -> CoreConfig:
        return CoreConfig(**tls("core", "core"), listen="127.0.0.1:0", heartbeat_interval_s=INTERVAL_S,
                          store_dir=str(tmp_path / "store"), state_db=pg_url, node_lost_after_s=30.0)

    first = await start_core(core_config())
    second = await start_core(core_config())
    assert first.lease.held() and not second.lease.held()
    cloud = await start_cloud(CloudConfig(**tls("cloud", "cloud-j"), node_id="cloud-j", listen="127.0.0.1:0",
                                          core=f"{first.address},{second.address}", model="tiny",
                                          deploy_dir=str(tmp_path / "cloud-j")), load_models("tiny", "tiny")[1])
    try:
        await eventually(lambda: cloud.agent.registered.is_set(), "the cloud to register")
        yield first, second, cloud
    finally:
        await cloud.stop(0.5)
        await second.stop(0)


async def test_a_training_job_goes_on_when_the_replica_it_started_at_dies(replicas_and_a_cloud, tmp_path: Path):
    from deploy_helpers import publish
    from test_training_jobs import Clients, spec, write_dataset

    from netgpt.v1 import common_pb2
    from netgpt.v1 import compute_plane_pb2 as cmp_pb2
    from netgpt.v1 import training_pb2 as tr_pb2

    first, second, _ = replicas_and_a_cloud
    async with open_channel(first.address) as channel:
        clients = Clients(channel)
        await publish(clients.models, write_dataset(tmp_path / "rows.jsonl"), "rows", "v1",
                      common_pb2.MODEL_KIND_DATASET)
        hp = tr_pb2.HyperParameters(max_steps=300, batch_size=2, checkpoint_every=50, threads=1, learning_rate=1e-3)
        job = await clients.start(spec(output_name="outlived", output_version="v1", hyper_parameters=hp))
        await clients.until(job.id, lambda j: j.step > 0, "the job under way", timeout_s=120)
    await _crash(first)

    await eventually(lambda: second.lease.held(), "the surviving replica to take the lease", timeout_s=30)
    async with open_channel(second.address) as channel:
        clients = Clients(channel)
        final = (await clients.watch(job.id, timeout_s=300))[-1]
        assert final.state == common_pb2.TRAINING_STATE_SUCCEEDED, final.error
        assert final.node_id == "cloud-j" and final.step == 300  # the same node went on, nothing restarted
        described = await clients.models.DescribeModelVersion(
            cmp_pb2.DescribeModelVersionRequest(name="outlived", version="v1"), timeout=5)
        assert described.manifest.metadata["lineage.job_id"] == job.id


async def test_a_deploy_queued_at_a_replica_that_dies_completes_through_the_other(
        replicas_and_a_cloud, tiny, tmp_path: Path):
    from deploy_helpers import deploy, lora_artifact, publish, settled

    from netgpt.v1 import common_pb2
    from netgpt.v1 import compute_plane_pb2_grpc as cmp_grpc

    first, second, cloud = replicas_and_a_cloud
    adapter = lora_artifact(tiny.llama_dir, tmp_path / "adapter", tmp_path / "adapter.tar", seed=3)
    async with open_channel(first.address) as channel:
        stub = cmp_grpc.ComputePlaneServiceStub(channel)
        await publish(stub, adapter, "lora-r", "v1", common_pb2.MODEL_KIND_LORA_ADAPTER, base_model="llama")
        commands = await deploy(stub, "lora-r", "v1", ("cloud-j",))
    await _crash(first)  # the command waits in the database; the blob is in the shared directory
    async with open_channel(second.address) as channel:
        state = await settled(cmp_grpc.ComputePlaneServiceStub(channel), "cloud-j", commands["cloud-j"])
    assert state.phase == common_pb2.DEPLOYMENT_PHASE_SERVING, state.error
    assert any(m.name == "lora-r" and m.version == "v1" for m in cloud.agent.current_load().models_served)
