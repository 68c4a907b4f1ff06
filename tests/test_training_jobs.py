"""Fine-tuning jobs on the compute plane, end to end on loopback: bad specs, a LoRA job on the cloud
that is published with its lineage, deployed and then answers, a full GPT-2 job on the edge that
becomes an ONNX artifact, Watch, cancel, a node restarted mid-job that resumes from its
checkpoint, and a core killed mid-job that knows the job again. Real core, real nodes, real worker
processes; tiny models and a few steps."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from deploy_helpers import deploy, publish, settled
from harness import Cluster, start_cluster
from helpers import cli, concise, eventually, generate, new_session
from throwaway_ca import tls

from cloud_node.daemon import start_cloud
from netgpt.channels import open_channel
from netgpt.config import CloudConfig
from netgpt.v1 import common_pb2
from netgpt.v1 import compute_plane_pb2 as cmp_pb2
from netgpt.v1 import compute_plane_pb2_grpc as cmp_grpc
from netgpt.v1 import training_pb2 as tr_pb2
from netgpt.v1 import training_pb2_grpc as tr_grpc
from netgpt.v1 import user_plane_pb2 as up_pb2

T = tr_pb2
S = common_pb2
TERMINAL = {S.TRAINING_STATE_SUCCEEDED, S.TRAINING_STATE_FAILED, S.TRAINING_STATE_CANCELLED}
ROWS = [{"prompt": f"Where can I eat {food} in {cell}?", "completion": f" Try the {food} place near {cell}."}
        for food in ("fish", "noodles", "pizza", "curry") for cell in ("the harbour", "the campus")]


def write_dataset(path: Path, rows: list[dict] = ROWS) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def spec(**fields) -> tr_pb2.TrainingJobSpec:
    """A small valid spec (LoRA on the cloud's serving model, 4 steps); ``fields`` override it."""
    hp = fields.pop("hyper_parameters", T.HyperParameters(max_steps=4, batch_size=2, learning_rate=1e-3,
                                                           threads=1))
    base = dict(name="test", method=T.TRAINING_METHOD_LORA, role=S.NODE_ROLE_CLOUD,
                dataset=T.StoredVersion(name="rows", version="v1"), lora=T.LoraSettings(rank=4),
                hyper_parameters=hp, seed=7, output_name="tuned", output_version="v1")
    base.update(fields)
    return T.TrainingJobSpec(**base)


class Clients:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.training = tr_grpc.TrainingServiceStub(channel)
        self.models = cmp_grpc.ComputePlaneServiceStub(channel)

    async def start(self, job_spec: tr_pb2.TrainingJobSpec) -> tr_pb2.TrainingJob:
        reply = await self.training.StartTrainingJob(T.StartTrainingJobRequest(spec=job_spec), timeout=10)
        return reply.job

    async def get(self, job_id: str) -> tr_pb2.TrainingJob:
        return (await self.training.GetTrainingJob(T.GetTrainingJobRequest(job_id=job_id), timeout=10)).job

    async def watch(self, job_id: str, timeout_s: float = 240) -> list[tr_pb2.TrainingJob]:
        call = self.training.WatchTrainingJob(T.WatchTrainingJobRequest(job_id=job_id), timeout=timeout_s)
        return [reply.job async for reply in call]

    async def until(self, job_id: str, predicate, what: str, timeout_s: float = 120) -> tr_pb2.TrainingJob:
        """The job once ``predicate`` holds for it; an AssertionError as soon as it ends without."""
        async def reached() -> tr_pb2.TrainingJob | None:
            job = await self.get(job_id)
            if predicate(job):
                return job
            assert job.state not in TERMINAL, f"job ended {S.TrainingState.Name(job.state)} " \
                                              f"({job.error}) while waiting for {what}"
            return None

        return await eventually(reached, what, timeout_s, poll_s=0.05)


@pytest.fixture(scope="module")
def tiny_models(tiny):
    """(edge, cloud) loaded from the tiny random-weight folders: the nodes train those folders."""
    from appkit.all_in_one import load_models

    return load_models("tiny", "tiny")


@pytest.fixture(scope="module")
async def cluster(tiny_models, tmp_path_factory) -> AsyncIterator[Cluster]:
    """Nodes started from the tiny models' folders (so "the serving model" is trainable), with their own
    deploy dirs (where jobs keep their checkpoints)."""
    root = tmp_path_factory.mktemp("training-nodes")
    running = await start_cluster(*tiny_models, heartbeat_interval_s=0.2,
                                  cloud={"model": "tiny", "deploy_dir": str(root / "cloud")},
                                  edge={"model": "tiny", "deploy_dir": str(root / "edge")})
    yield running
    await running.stop()


@pytest.fixture(scope="module")
async def clients(cluster) -> AsyncIterator[Clients]:
    async with open_channel(cluster.core.address) as channel:
        yield Clients(channel)


@pytest.fixture(scope="module")
async def dataset(clients, tmp_path_factory) -> common_pb2.ModelRef:
    path = write_dataset(tmp_path_factory.mktemp("data") / "rows.jsonl")
    return await publish(clients.models, path, "rows", "v1", S.MODEL_KIND_DATASET)


async def expect_error(call, code: grpc.StatusCode, *words: str) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == code, info.value.details()
    for word in words:
        assert word in info.value.details()
    return info.value.details()


async def test_bad_specs_name_the_field(clients, dataset):
    bad = [
        (spec(method=T.TRAINING_METHOD_UNSPECIFIED), "spec.method"),
        (spec(role=S.NODE_ROLE_UNSPECIFIED), "spec.role"),
        (spec(method=T.TRAINING_METHOD_FULL), "spec.method"),  # full fine-tuning is for the edge
        (spec(dataset=T.StoredVersion(name="rows")), "spec.dataset.version"),
        (spec(output_version=""), "spec.output_version"),
        (spec(output_name="../up"), "spec.output_name"),
        (spec(lora=T.LoraSettings(rank=4, dropout=1.5)), "spec.lora.dropout"),
        (spec(lora=T.LoraSettings(rank=4, target_modules=["q_proj;rm"])), "spec.lora.target_modules"),
        (spec(hyper_parameters=T.HyperParameters(learning_rate=3)), "spec.hyper_parameters.learning_rate"),
        (spec(dataset=T.StoredVersion(name="rows", version="v1", sha256="0" * 64)), "spec.dataset.sha256"),
        (spec(role=S.NODE_ROLE_EDGE, method=T.TRAINING_METHOD_FULL, lora=None, quantization="int3"),
         "spec.quantization"),
        (spec(quantization="int8"), "spec.quantization"),  # a cloud job publishes an adapter, not a graph
    ]
    for job_spec, field_name in bad:
        await expect_error(clients.start(job_spec), grpc.StatusCode.INVALID_ARGUMENT, field_name)
    await expect_error(clients.start(spec(dataset=T.StoredVersion(name="rows", version="v9"))),
                       grpc.StatusCode.NOT_FOUND, "spec.dataset", "rows version v9")
    await expect_error(clients.start(spec(base=T.StoredVersion(name="llama-x", version="v1"))),
                       grpc.StatusCode.NOT_FOUND, "spec.base")
    await expect_error(clients.start(spec(node_id="edge-1")), grpc.StatusCode.FAILED_PRECONDITION,
                       "spec.node_id", "not a cloud node")
    await expect_error(clients.start(spec(node_id="cloud-9")), grpc.StatusCode.NOT_FOUND, "spec.node_id", "cloud-9")
    await expect_error(clients.start(spec(output_name="rows")), grpc.StatusCode.ALREADY_EXISTS, "spec.output_version")
    await expect_error(clients.get("no-such-job"), grpc.StatusCode.NOT_FOUND, "no-such-job")
    listed = await clients.training.ListTrainingJobs(T.ListTrainingJobsRequest(), timeout=5)
    assert not [j for j in listed.jobs if j.spec.output_name == "tuned" and j.spec.output_version == "v1"]


async def test_no_node_of_the_role_is_failed_precondition(core, core_channel, tmp_path):
    clients = Clients(core_channel)
    await publish(clients.models, write_dataset(tmp_path / "rows.jsonl"), "rows", "v1", S.MODEL_KIND_DATASET)
    await expect_error(clients.start(spec()), grpc.StatusCode.FAILED_PRECONDITION, "spec.role", "cloud")


async def test_lora_job_on_the_cloud_publishes_lineage_deploys_and_serves(cluster, clients, dataset):
    job = await clients.start(spec(output_name="lora-tuned", output_version="v1"))
    assert job.state == S.TRAINING_STATE_PLACED and job.node_id == "cloud-1"
    assert job.dataset.sha256 == dataset.sha256
    seen = await clients.watch(job.id)
    final = seen[-1]
    assert final.state == S.TRAINING_STATE_SUCCEEDED, final.error
    steps = [j.step for j in seen if j.state == S.TRAINING_STATE_RUNNING]
    assert steps == sorted(steps) and steps[-1] >= 1  # Watch streams progress, never backwards
    assert final.step == final.total_steps == 4 and final.train_loss > 0
    assert (final.result.name, final.result.version) == ("lora-tuned", "v1")
    assert final.result.kind == S.MODEL_KIND_LORA_ADAPTER

    manifest = (await clients.models.DescribeModelVersion(
        cmp_pb2.DescribeModelVersionRequest(name="lora-tuned", version="v1"), timeout=5)).manifest
    serving = cluster.cloud.slot.current.ref
    assert manifest.base_model == serving.name and manifest.sha256 == final.result.sha256
    meta = manifest.metadata
    assert meta["lineage.dataset_sha256"] == dataset.sha256 and meta["lineage.dataset"] == "rows"
    assert meta["lineage.base_model"] == serving.name and meta["lineage.base_sha256"] == serving.sha256
    assert meta["lineage.method"] == "lora" and meta["lineage.job_id"] == job.id
    assert json.loads(meta["lineage.hyper_parameters"])["max_steps"] == 4
    assert float(meta["metric.train_loss"]) > 0 and meta["peft_type"] == "LORA"
    assert not (Path(cluster.cloud.deployer.work_dir) / "training" / job.id).exists()  # job folder cleaned

    commands = await deploy(clients.models, "lora-tuned", "v1")
    state = await settled(clients.models, "cloud-1", commands["cloud-1"])
    assert state.phase == S.DEPLOYMENT_PHASE_SERVING, state.error
    session = await new_session(cluster.core.address)
    events = await generate(cluster.edge.address, concise(session, "Where is the harbour?", max_new_tokens=4,
                                                          task=up_pb2.TASK_CLASS_CHAT))
    summary = events[-1].summary
    assert summary.terminated_at == S.NODE_ROLE_CLOUD
    assert (summary.cloud_model.name, summary.cloud_model.version) == ("lora-tuned", "v1")


async def test_lora_job_on_a_base_version_from_the_store(cluster, clients, dataset, tiny, tmp_path):
    from cmp.archive import pack_folder

    base = await publish(clients.models, pack_folder(tiny.llama_dir, tmp_path / "llama.tar"), "llama-base", "v1",
                         S.MODEL_KIND_CHECKPOINT)
    job = await clients.start(spec(base=T.StoredVersion(name="llama-base", version="v1"), output_name="on-base",
                                   output_version="v1"))
    assert job.base.sha256 == base.sha256
    final = (await clients.watch(job.id))[-1]
    assert final.state == S.TRAINING_STATE_SUCCEEDED, final.error
    manifest = (await clients.models.DescribeModelVersion(
        cmp_pb2.DescribeModelVersionRequest(name="on-base", version="v1"), timeout=5)).manifest
    assert manifest.base_model == "llama-base"
    assert (manifest.metadata["lineage.base_version"], manifest.metadata["lineage.base_sha256"]) == ("v1", base.sha256)


async def test_full_job_on_the_edge_publishes_an_onnx_artifact(cluster, clients, dataset):
    job = await clients.start(spec(role=S.NODE_ROLE_EDGE, method=T.TRAINING_METHOD_FULL, lora=None,
                                   output_name="gpt2-tuned", output_version="v1",
                                   hyper_parameters=T.HyperParameters(max_steps=2, batch_size=2, threads=1)))
    assert job.node_id == "edge-1"
    final = (await clients.watch(job.id))[-1]
    assert final.state == S.TRAINING_STATE_SUCCEEDED, final.error
    assert final.result.kind == S.MODEL_KIND_ONNX_EDGE
    manifest = (await clients.models.DescribeModelVersion(
        cmp_pb2.DescribeModelVersionRequest(name="gpt2-tuned", version="v1"), timeout=5)).manifest
    assert manifest.kind == S.MODEL_KIND_ONNX_EDGE and manifest.metadata["runtime"] == "onnxruntime"
    assert float(manifest.metadata["parity_max_abs_diff"]) <= 1e-4
    assert manifest.metadata["lineage.method"] == "full" and manifest.metadata["lineage.steps"] == "2"
    assert manifest.metadata["quantization"] == "int8"  # the edge node's own setting: auto, and int8 passes the gate


async def test_edge_job_publishes_the_quantised_graph_it_asks_for(cluster, clients, dataset):
    """``--quantization int8``: the published artifact is the gated int8 graph, with the gate's figures."""
    job = await clients.start(spec(role=S.NODE_ROLE_EDGE, method=T.TRAINING_METHOD_FULL, lora=None,
                                   output_name="gpt2-int8", output_version="v1", quantization="int8",
                                   hyper_parameters=T.HyperParameters(max_steps=2, batch_size=2, threads=1)))
    final = (await clients.watch(job.id))[-1]
    assert final.state == S.TRAINING_STATE_SUCCEEDED, final.error
    manifest = (await clients.models.DescribeModelVersion(
        cmp_pb2.DescribeModelVersionRequest(name="gpt2-int8", version="v1"), timeout=5)).manifest
    assert manifest.metadata["quantization"] == "int8"
    assert float(manifest.metadata["gate_whole_text_greedy_agreement"]) >= 0.9, dict(manifest.metadata)


async def test_cancel_publishes_nothing(cluster, clients, dataset):
    job = await clients.start(spec(output_name="cancelled", output_version="v1",
                                   hyper_parameters=T.HyperParameters(max_steps=100_000, batch_size=2, threads=1)))
    await clients.until(job.id, lambda j: j.state == S.TRAINING_STATE_RUNNING and j.step >= 1, "a first step")
    reply = await clients.training.CancelTrainingJob(T.CancelTrainingJobRequest(job_id=job.id), timeout=5)
    assert reply.job.id == job.id
    final = (await clients.watch(job.id, timeout_s=60))[-1]
    assert final.state == S.TRAINING_STATE_CANCELLED and final.step < 100_000
    assert not final.result.name
    await expect_error(clients.models.DescribeModelVersion(
        cmp_pb2.DescribeModelVersionRequest(name="cancelled", version="v1"), timeout=5), grpc.StatusCode.NOT_FOUND)
    folder = Path(cluster.cloud.deployer.work_dir) / "training" / job.id
    await eventually(lambda: not folder.exists(), "the cancelled job's folder to be deleted")


async def test_restarted_node_resumes_from_its_checkpoint(cluster, clients, dataset, tiny_models):
    hp = T.HyperParameters(max_steps=30, batch_size=2, checkpoint_every=2, threads=1, learning_rate=1e-3)
    job = await clients.start(spec(output_name="resumed", output_version="v1", hyper_parameters=hp))
    await clients.until(job.id, lambda j: j.step >= 5, "a few steps (two checkpoints)")
    old = cluster.cloud
    config = CloudConfig(**tls("cloud", "cloud-1"), listen="127.0.0.1:0", core=cluster.core.address, model="tiny",
                         deploy_dir=str(old.deployer.work_dir))
    await old.stop(0.5)  # the worker is stopped, the job folder (and its checkpoints) kept
    assert (Path(old.deployer.work_dir) / "training" / job.id / "command.pb").exists()
    cluster.cloud = await start_cloud(config, tiny_models[1])
    record = cluster.cloud.extras[-1].record(job.id)
    assert record is not None  # picked up from disk on start, not from the core
    final = (await clients.watch(job.id))[-1]
    assert final.state == S.TRAINING_STATE_SUCCEEDED, final.error
    assert final.step == 30 and record.resumed_from_step > 0



async def test_cli_publishes_a_dataset_trains_and_lists(cluster, clients, tmp_path, capsys):
    core = ("--core", cluster.core.address)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(ROWS[0]) + "\n" + '{"prompt": "no completion"}\n')
    assert await cli("dataset", "publish", str(bad), "--name", "cli-rows", "--version", "v1", *core) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2" in err and "'completion'" in err  # the line, and the missing field
    good = write_dataset(tmp_path / "good.jsonl")
    assert await cli("dataset", "publish", str(good), "--name", "cli-rows", "--version", "v1", *core) == 0
    status = await cli("train", "start", "--data", "cli-rows@v1", "--role", "cloud", "--steps", "2", "--rank", "2",
                       "--threads", "1", "--name", "cli-tuned", "--version", "v1", "--watch", *core)
    out = capsys.readouterr().out
    assert status == 0, out
    assert "succeeded" in out and "published cli-tuned v1" in out
    assert await cli("train", "list", *core) == 0
    assert "cli-tuned@v1" in capsys.readouterr().out
    assert await cli("train", "cancel", "no-such-job", *core) == 1
    assert "NOT_FOUND" in capsys.readouterr().err


async def test_local_mode_trains_a_folder_without_daemons(tiny, tmp_path, capsys):
    data = write_dataset(tmp_path / "rows.jsonl")
    out = tmp_path / "tuned"
    assert await cli("train", "start", "--local", "--base", str(tiny.gpt2_dir), "--data", str(data), "--method",
                     "full", "--steps", "2", "--batch-size", "2", "--threads", "1", "--out", str(out)) == 0
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    assert "full, 2 steps" in capsys.readouterr().out
    assert await cli("train", "start", "--local", "--base", str(tiny.gpt2_dir), "--data", str(tmp_path / "nope"),
                     "--out", str(tmp_path / "other")) == 2
    assert "does not exist" in capsys.readouterr().err


async def test_bad_rows_fail_the_job_naming_the_line(cluster, clients, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(ROWS[0]) + "\n" + '{"prompt": "no completion"}\n')
    await publish(clients.models, bad, "bad-rows", "v1", S.MODEL_KIND_DATASET)  # the store takes any bytes
    job = await clients.start(spec(dataset=T.StoredVersion(name="bad-rows", version="v1"),
                                   output_name="never", output_version="v1"))
    final = (await clients.watch(job.id, timeout_s=120))[-1]
    assert final.state == S.TRAINING_STATE_FAILED
    assert final.error_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert ":2" in final.error and "completion" in final.error
    await expect_error(clients.models.DescribeModelVersion(
        cmp_pb2.DescribeModelVersionRequest(name="never", version="v1"), timeout=5), grpc.StatusCode.NOT_FOUND)


# --- end to end: kill -9 the core mid-job, start it again on the same store ------------------------


@pytest.mark.e2e
def test_kill_9_the_core_mid_job_and_the_job_is_where_it_was(tiny, tmp_path):
    """A core process killed (SIGKILL) while a job runs and started again on the same store knows the
    job at once (from its SQLite file); the node, which never stopped, carries it on from where it was."""
    from daemons import Daemon

    def core_daemon(listen: str) -> Daemon:
        return Daemon("core", "--listen", listen, "--heartbeat-interval-s", "0.3",
                      "--store-dir", str(tmp_path / "store"))

    core = core_daemon("127.0.0.1:0")
    address = core.address
    cloud = Daemon("cloud", "--listen", "127.0.0.1:0", "--core", address, "--model", "tiny", "--node-id", "cloud-k")
    daemons = [core, cloud]
    long_job = spec(output_name="killed", hyper_parameters=T.HyperParameters(max_steps=100_000, batch_size=2,
                                                                              threads=1))
    try:
        cloud.wait_for("cp.registered")
        before = asyncio.run(start_running(address, write_dataset(tmp_path / "rows.jsonl"), long_job))

        core.proc.kill()  # kill -9: no drain, nothing flushed on the way out
        core.proc.wait(timeout=30)
        core = daemons[0] = core_daemon(address)
        restored = core.wait_for("training.jobs_restored")
        assert (restored["jobs"], restored["running"]) == (1, 1)
        core.wait_for("server.started")
        asyncio.run(carry_on(address, before))
        starts = [e for e in list(cloud.events) if e.get("event") == "training.job" and e.get("job_id") == before.id
                  and e.get("state") == "running"]
        assert len(starts) == 1, starts  # the node went on with the job; the restarted core did not restart it
    finally:
        for daemon in daemons:
            if daemon.proc.poll() is None:
                daemon.proc.kill()
                daemon.proc.wait(timeout=30)


async def start_running(address: str, data: Path, job_spec: tr_pb2.TrainingJobSpec) -> tr_pb2.TrainingJob:
    """Publish the dataset, start the job and return it once the node has run a few steps of it."""
    async with open_channel(address) as channel:
        clients = Clients(channel)
        await publish(clients.models, data, "rows", "v1", S.MODEL_KIND_DATASET)
        job = await clients.start(job_spec)
        return await clients.until(job.id, lambda j: j.state == S.TRAINING_STATE_RUNNING and j.step >= 2,
                                   "a few steps", timeout_s=180)


async def carry_on(address: str, before: tr_pb2.TrainingJob) -> None:
    """The restarted core's view of ``before``: the same job, running, then past the step it had reached."""
    async with open_channel(address) as channel:
        clients = Clients(channel)
        job = await clients.get(before.id)
        assert job.state == S.TRAINING_STATE_RUNNING, S.TrainingState.Name(job.state)
        assert (job.spec, job.node_id, job.dataset, job.created_at) == \
            (before.spec, before.node_id, before.dataset, before.created_at)
        await clients.until(before.id, lambda j: j.step > before.step, "the node's reports, past where it was")
        await clients.training.CancelTrainingJob(T.CancelTrainingJobRequest(job_id=before.id), timeout=5)
        final = (await clients.watch(before.id, timeout_s=60))[-1]
        assert final.state == S.TRAINING_STATE_CANCELLED
