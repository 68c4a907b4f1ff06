"""Train → publish → deploy → first request on the new version, wall time split per phase.

    python -m bench.train_deploy [--role cloud|edge] [--method lora|full] [--steps 20] [--model tiny|starter]
                                 [--out bench/reports/train_deploy.json]

An all-in-one cluster (core, cloud, edge in this process; the training worker is a child process
of the node, as in production) with the tiny (or starter) models. One fine-tuning job on a
seeded prompt/completion dataset, timed from the client's side through the protocol:
StartTrainingJob → the node reports RUNNING (placement + delivery with the next heartbeat),
→ first step reported (fetch inputs, spawn the worker, load the base), → last step (train),
→ SUCCEEDED (package + publish; for the edge the ONNX export and its parity checks), then
DeployModel → SERVING, then the first request whose summary names the new version. Progress
reaches the client through heartbeats, so each boundary is seen up to one heartbeat late.

The baseline, in the same run, is the same trainer on the same folder, dataset and settings run
by hand in a worker process (``TrainingProcess``): ``job_to_published / local_train`` is what
the compute plane adds around training (delivery, transfers, packaging, publishing).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from appkit.all_in_one import load_models
from bench.distribution import machine
from cmp.transfer_client import publish_file
from netgpt.channels import open_channel
from netgpt.logs import configure_logging
from netgpt.training.trainer import TrainConfig
from netgpt.training.worker import TrainingProcess
from netgpt.v1 import common_pb2
from netgpt.v1 import compute_plane_pb2 as cmp_pb2
from netgpt.v1 import compute_plane_pb2_grpc as cmp_grpc
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import control_plane_pb2_grpc as cp_grpc
from netgpt.v1 import training_pb2 as tr_pb2
from netgpt.v1 import training_pb2_grpc as tr_grpc
from netgpt.v1 import user_plane_pb2 as up_pb2
from netgpt.v1 import user_plane_pb2_grpc as up_grpc

FOODS = ("fish", "noodles", "pizza", "curry", "tapas", "ramen", "burgers", "salad")
PLACES = ("the harbour", "the campus", "the station", "the old town")


def write_dataset(path: Path) -> Path:
    rows = [{"prompt": f"Where can I eat {food} near {place}?", "completion": f" Try the {food} place by {place}."}
            for food in FOODS for place in PLACES]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


async def first_request(core: str, edge: str, role: int) -> up_pb2.GenerationSummary:
    async with open_channel(core) as channel:
        session = await cp_grpc.ControlPlaneServiceStub(channel).EstablishSession(
            cp_pb2.EstablishSessionRequest(ue_id="ue-bench", cell_id="cell-harbour-1"), timeout=10)
    task = up_pb2.TASK_CLASS_LOOKUP if role == common_pb2.NODE_ROLE_EDGE else up_pb2.TASK_CLASS_CHAT
    request = up_pb2.GenerateRequest(session_id=session.session.session_id, kind=up_pb2.PROMPT_KIND_CONCISE,
                                     prompt="Where can I eat fish tonight?", task=task,
                                     ran=common_pb2.RanContext(cell_id="cell-harbour-1", ue_id="ue-bench"),
                                     params=up_pb2.GenerationParams(max_new_tokens=8))
    async with open_channel(edge) as channel:
        events = [e async for e in up_grpc.UserPlaneServiceStub(channel).Generate(request, timeout=60)]
    return events[-1].summary


async def measure(args: argparse.Namespace, workdir: Path) -> dict:
    from appkit.all_in_one import start_all_in_one  # after logging is configured
    from netgpt.config import CloudConfig, CoreConfig, EdgeConfig

    gpt2, llama = load_models(args.model, args.model)
    core_cfg = CoreConfig(listen="127.0.0.1:0", heartbeat_interval_s=args.heartbeat_s, store_dir=str(workdir / "s"))
    cloud_cfg = CloudConfig(node_id="cloud-1", listen="127.0.0.1:0", model=args.model, deploy_dir=str(workdir / "c"))
    edge_cfg = EdgeConfig(node_id="edge-1", listen="127.0.0.1:0", model=args.model, deploy_dir=str(workdir / "e"),
                          profiles_db=":memory:")
    cluster = await start_all_in_one(gpt2, llama, core_cfg, cloud_cfg, edge_cfg)
    role = common_pb2.NODE_ROLE_EDGE if args.role == "edge" else common_pb2.NODE_ROLE_CLOUD
    method = tr_pb2.TRAINING_METHOD_FULL if args.method == "full" else tr_pb2.TRAINING_METHOD_LORA
    hp = tr_pb2.HyperParameters(max_steps=args.steps, batch_size=4, learning_rate=1e-3, threads=args.threads)
    try:
        data = write_dataset(workdir / "rows.jsonl")
        async with open_channel(cluster.core.address) as channel:
            models, training = cmp_grpc.ComputePlaneServiceStub(channel), tr_grpc.TrainingServiceStub(channel)
            t0 = time.perf_counter()
            await publish_file(models, cmp_pb2.ModelManifest(name="rows", version="v1",
                                                             kind=common_pb2.MODEL_KIND_DATASET), data)
            marks = {"dataset_published": time.perf_counter()}
            spec = tr_pb2.TrainingJobSpec(method=method, role=role, lora=tr_pb2.LoraSettings(rank=8),
                                          dataset=tr_pb2.StoredVersion(name="rows", version="v1"),
                                          hyper_parameters=hp, seed=0, output_name="bench-tuned", output_version="v1")
            job = (await training.StartTrainingJob(tr_pb2.StartTrainingJobRequest(spec=spec), timeout=10)).job
            marks["job_started"] = time.perf_counter()
            async for reply in training.WatchTrainingJob(tr_pb2.WatchTrainingJobRequest(job_id=job.id), timeout=3600):
                job = reply.job
                now = time.perf_counter()
                if job.state == common_pb2.TRAINING_STATE_RUNNING:
                    marks.setdefault("running", now)
                    if job.step > 0:
                        marks.setdefault("first_step", now)
                    if job.total_steps and job.step == job.total_steps:
                        marks.setdefault("last_step", now)
            marks["published"] = time.perf_counter()
            if job.state != common_pb2.TRAINING_STATE_SUCCEEDED:
                raise SystemExit(f"job {common_pb2.TrainingState.Name(job.state)}: {job.error}")
            deploy = await models.DeployModel(cmp_pb2.DeployModelRequest(name="bench-tuned", version="v1"), timeout=10)
            node = deploy.nodes[0]
            command = node.deployments[0].command_id
            while True:
                status = await models.GetDeploymentStatus(cmp_pb2.GetDeploymentStatusRequest(node_id=node.node_id),
                                                          timeout=10)
                state = next(s for s in status.nodes[0].deployments if s.command_id == command)
                if state.phase in (common_pb2.DEPLOYMENT_PHASE_SERVING, common_pb2.DEPLOYMENT_PHASE_FAILED):
                    break
                await asyncio.sleep(0.02)
            marks["serving"] = time.perf_counter()
            summary = await first_request(cluster.core.address, cluster.edge.address, role)
            marks["first_request"] = time.perf_counter()
        served = summary.edge_model if role == common_pb2.NODE_ROLE_EDGE else summary.cloud_model
        assert served.version == "v1" and served.name == "bench-tuned", served
        base = (cluster.edge if role == common_pb2.NODE_ROLE_EDGE else cluster.cloud).extras[-1]._serving_base()
    finally:
        await cluster.stop()

    config = TrainConfig(method=args.method, lora_rank=8, max_steps=args.steps, batch_size=4, learning_rate=1e-3,
                         threads=args.threads)
    started = time.perf_counter()
    worker = TrainingProcess()
    worker.start(base.folder, data, workdir / "local", config)
    await worker.result()
    local_train = time.perf_counter() - started

    def span(a: str, b: str) -> float:
        return round(marks[b] - marks[a], 3)

    phases = {
        "publish_dataset_s": round(marks["dataset_published"] - t0, 3),
        "placement_and_delivery_s": span("job_started", "running"),
        "fetch_inputs_and_start_worker_s": span("running", "first_step"),
        "train_s": span("first_step", "last_step"),
        "package_and_publish_s": span("last_step", "published"),
        "deploy_to_serving_s": span("published", "serving"),
        "first_request_s": span("serving", "first_request"),
    }
    job_s = span("job_started", "published")
    return {
        "bench": "train_deploy", "role": args.role, "method": args.method, "model": args.model,
        "steps": args.steps, "threads": args.threads, "heartbeat_s": args.heartbeat_s, "machine": machine(workdir),
        "phases": phases, "job_to_published_s": job_s, "total_s": round(marks["first_request"] - t0, 3),
        "baseline_local_train_s": round(local_train, 3),
        "ratio_job_vs_local_train": round(job_s / local_train, 3),
        "final_train_loss": job.train_loss, "tokens_per_s": round(job.tokens_per_second, 1),
        "published": {"name": job.result.name, "version": job.result.version, "sha256": job.result.sha256,
                      "kind": common_pb2.ModelKind.Name(job.result.kind)},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=("cloud", "edge"), default="cloud")
    parser.add_argument("--method", choices=("lora", "full"), default="lora")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of the training worker")
    parser.add_argument("--model", choices=("tiny", "starter"), default="tiny", help="the models both nodes run")
    parser.add_argument("--heartbeat-s", type=float, default=0.5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    configure_logging(json=True, level="warning")
    with tempfile.TemporaryDirectory(prefix="netgpt-bench-train-") as tmp:
        report = asyncio.run(measure(args, Path(tmp)))
    out = args.out or Path(f"bench/reports/train_deploy_{args.role}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("role", "method", "phases", "job_to_published_s",
                                             "baseline_local_train_s", "ratio_job_vs_local_train", "total_s")}))


if __name__ == "__main__":
    main()
