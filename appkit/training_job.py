"""One fine-tuning job on the compute plane, as a user runs one, on an all-in-one cluster in this process.

The recipes that build shipped weights (``make pretrained-adapter``) train this way, not by calling the
trainer: the dataset is published to the core's store, ``StartTrainingJob`` places the job on the cloud
node, whose training agent fetches the inputs, trains in a worker process and publishes the result;
the result is then fetched from the store like any client would (``netgpt model fetch``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import structlog

from appkit.all_in_one import load_models, start_all_in_one
from cmp.archive import unpack
from cmp.convert import spec_from_settings
from cmp.transfer_client import fetch_to_file, publish_file
from netgpt.channels import open_channel
from netgpt.config import CloudConfig, CoreConfig, EdgeConfig
from netgpt.errors import StartupError
from netgpt.v1 import common_pb2, training_pb2
from netgpt.v1 import compute_plane_pb2 as cmp_pb2
from netgpt.v1 import compute_plane_pb2_grpc as cmp_grpc
from netgpt.v1 import training_pb2_grpc as tr_grpc

log = structlog.get_logger("netgpt.appkit.training_job")

Progress = Callable[[training_pb2.TrainingJob], None]
DATASET = ("recipe-dataset", "v1")
OUTPUT = ("recipe-result", "v1")
JOB_TIMEOUT_S = 7 * 86400.0


async def train_cloud_adapter(cloud_model: str, dataset: Path, settings: Mapping[str, Any], out: Path,
                              progress: Progress | None = None) -> tuple[training_pb2.TrainingJob, Path]:
    """Train a LoRA adapter on ``cloud_model`` (served bare) with ``settings`` (``TrainConfig`` field
    names) as a job on a fresh cluster; the published adapter is unpacked into the new folder ``out``.
    Returns the finished job and the adapter's folder; StartupError, naming the job, when it fails."""
    with tempfile.TemporaryDirectory(prefix="netgpt-job-") as tmp:
        work = Path(tmp)
        gpt2, llama = load_models("tiny", cloud_model, adapter="none")
        cluster = await start_all_in_one(
            gpt2, llama, CoreConfig(listen="127.0.0.1:0", store_dir=str(work / "store")),
            CloudConfig(node_id="cloud-1", listen="127.0.0.1:0", model=cloud_model, adapter="none",
                        deploy_dir=str(work / "cloud")),
            EdgeConfig(node_id="edge-1", listen="127.0.0.1:0", model="tiny", deploy_dir=str(work / "edge"),
                       profiles_db=":memory:"))
        try:
            async with open_channel(cluster.core.address, cluster.operator) as channel:  # as the cluster's operator
                models, training = cmp_grpc.ComputePlaneServiceStub(channel), tr_grpc.TrainingServiceStub(channel)
                await publish_file(models, cmp_pb2.ModelManifest(name=DATASET[0], version=DATASET[1],
                                                                 kind=common_pb2.MODEL_KIND_DATASET), dataset)
                spec = spec_from_settings(settings)
                spec.MergeFrom(training_pb2.TrainingJobSpec(
                    name="recipe", role=common_pb2.NODE_ROLE_CLOUD, output_name=OUTPUT[0], output_version=OUTPUT[1],
                    dataset=training_pb2.StoredVersion(name=DATASET[0], version=DATASET[1])))
                job = (await training.StartTrainingJob(training_pb2.StartTrainingJobRequest(spec=spec),
                                                       timeout=30)).job
                log.info("job.started", job_id=job.id, node_id=job.node_id)
                async for reply in training.WatchTrainingJob(training_pb2.WatchTrainingJobRequest(job_id=job.id),
                                                             timeout=JOB_TIMEOUT_S):
                    job = reply.job
                    if progress:
                        progress(job)
                if job.state != common_pb2.TRAINING_STATE_SUCCEEDED:
                    raise StartupError(f"training job {job.id}: {common_pb2.TrainingState.Name(job.state)}"
                                       f"{': ' + job.error if job.error else ''}")
                archive = work / "result.tar"
                await fetch_to_file(models, job.result.name, job.result.version, archive, sha256=job.result.sha256)
        finally:
            await cluster.stop()
        folder = unpack(archive, out)
    log.info("job.fetched", job_id=job.id, sha256=job.result.sha256, out=str(folder))
    return job, folder
