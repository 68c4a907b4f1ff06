"""``netgpt train start|watch|cancel|list`` (fine-tuning jobs on the compute plane, or ``--local``
without daemons) and ``netgpt dataset publish`` (a JSONL dataset into the core's model store).

Progress is a tqdm bar of steps with the train loss and tokens/s, on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm

from cli.common import (
    DEFAULT_TIMEOUT_S,
    Subparsers,
    call_core,
    core_actions,
    enum_choices,
    on_core,
)
from netgpt.config import EDGE_QUANTIZATION_CHOICES
from netgpt.errors import NetGptError, StartupError
from netgpt.v1 import common_pb2
from netgpt.v1 import training_pb2 as tr_pb2
from netgpt.v1 import training_pb2_grpc as tr_grpc
from netgpt.words import enum_word

ROLES = enum_choices(common_pb2.NodeRole, exclude={"core"})
METHODS = enum_choices(tr_pb2.TrainingMethod)
TERMINAL = {common_pb2.TRAINING_STATE_SUCCEEDED, common_pb2.TRAINING_STATE_FAILED,
            common_pb2.TRAINING_STATE_CANCELLED}
HYPER = (  # flag, HyperParameters field, type, help
    ("--steps", "max_steps", int, "optimizer steps"),
    ("--batch-size", "batch_size", int, "examples per step"),
    ("--lr", "learning_rate", float, "peak learning rate"),
    ("--warmup", "warmup_steps", int, "linear warm-up steps"),
    ("--weight-decay", "weight_decay", float, "AdamW weight decay"),
    ("--max-seq-len", "max_seq_len", int, "longest example in tokens (default: the model's context)"),
    ("--checkpoint-every", "checkpoint_every", int, "steps between checkpoints (what a restart resumes from)"),
    ("--eval-fraction", "eval_fraction", float, "share of rows held out for the eval loss"),
    ("--eval-every", "eval_every", int, "steps between eval losses"),
    ("--threads", "threads", int, "CPU threads of the training worker"),
)


def state_word(state: int) -> str:
    return enum_word(common_pb2.TrainingState, state)


def store_version(text: str) -> tr_pb2.StoredVersion:
    """``NAME@VERSION`` (argparse type)."""
    name, sep, version = text.partition("@")
    if not sep or not name or not version:
        raise argparse.ArgumentTypeError(f"expected NAME@VERSION, got {text!r}")
    return tr_pb2.StoredVersion(name=name, version=version)


def add_commands(sub: Subparsers) -> None:
    action = core_actions(sub, "train", "fine-tune models: jobs on the nodes, or --local")

    start = action("start", _run_start, "start a fine-tuning job on a node (or --local: here, without daemons)")
    start.add_argument("--base", default="serving",
                       help="NAME@VERSION of a checkpoint in the store, or 'serving' (the node's own model); "
                            "with --local: a Hugging Face folder")
    start.add_argument("--data", required=True, help="NAME@VERSION of a dataset in the store; with --local: a JSONL "
                                                     "file")
    start.add_argument("--method", choices=METHODS, default="lora")
    start.add_argument("--rank", type=int, default=0, help="LoRA rank")
    start.add_argument("--alpha", type=float, default=0.0, help="LoRA alpha")
    start.add_argument("--dropout", type=float, default=0.0, help="LoRA dropout")
    start.add_argument("--target-modules", default="", help="comma-separated module names LoRA wraps")
    for flag, _, kind, text in HYPER:
        start.add_argument(flag, type=kind, default=0, help=text)
    start.add_argument("--seed", type=int, default=0)
    start.add_argument("--role", choices=ROLES, default="cloud", help="edge: GPT-2 → ONNX artifact; cloud: LLaMA → "
                                                                      "LoRA adapter")
    start.add_argument("--node", default="", help="train on this node (default: the least loaded of the role)")
    start.add_argument("--quantization", choices=EDGE_QUANTIZATION_CHOICES, default="",
                       help="edge: publish the auto, fp32, int8 or int4 graph (default: what the edge node serves); a "
                            "quantised one must pass the quality gate or the job fails")
    start.add_argument("--name", help="output model name in the store")
    start.add_argument("--version", help="output version in the store")
    start.add_argument("--job-name", default="", help="a label for the job")
    start.add_argument("--watch", action="store_true", help="follow the job with a progress bar until it ends")
    start.add_argument("--local", action="store_true", help="train here, without daemons")
    start.add_argument("--out", type=Path, help="with --local: the folder to write (adapter or full model)")

    watch = action("watch", _run_watch, "follow a job with a progress bar until it ends")
    watch.add_argument("job")
    cancel = action("cancel", _run_cancel, "stop a job; nothing is published")
    cancel.add_argument("job")
    action("list", _run_list, "every job the core knows, newest first")

    dataset = core_actions(sub, "dataset", "put JSONL datasets into the core's model store")
    publish = dataset("publish", _run_dataset_publish, "check a JSONL dataset line by line and publish it")
    publish.add_argument("file", type=Path)
    publish.add_argument("--name", required=True)
    publish.add_argument("--version", required=True)


# --- jobs on the compute plane ----------------------------------------------------------------


def training_settings(args: argparse.Namespace) -> tr_pb2.TrainingJobSpec:
    """What to train with (method, LoRA, hyper-parameters, seed): shared by jobs and --local."""
    return tr_pb2.TrainingJobSpec(
        method=METHODS[args.method], seed=args.seed,
        lora=tr_pb2.LoraSettings(rank=args.rank, alpha=args.alpha, dropout=args.dropout,
                                 target_modules=[m for m in args.target_modules.split(",") if m]),
        hyper_parameters=tr_pb2.HyperParameters(**{field: getattr(args, flag[2:].replace("-", "_"))
                                                   for flag, field, _, _ in HYPER}))


def spec_from_args(args: argparse.Namespace) -> tr_pb2.TrainingJobSpec:
    if not (args.name and args.version):
        raise StartupError("--name and --version name the version the result is published as")
    spec = training_settings(args)
    spec.MergeFrom(tr_pb2.TrainingJobSpec(
        name=args.job_name, dataset=store_version(args.data), role=ROLES[args.role], node_id=args.node,
        output_name=args.name, output_version=args.version, quantization=args.quantization))
    if args.base != "serving":
        spec.base.CopyFrom(store_version(args.base))
    return spec


def describe_job(job: tr_pb2.TrainingJob) -> str:
    text = f"job {job.id} on {job.node_id or '-'}: {state_word(job.state)}"
    if job.total_steps:
        text += f", step {job.step}/{job.total_steps}"
    if job.train_loss:
        text += f", loss {job.train_loss:.4g}"
    if job.error:
        text += f" - {job.error}"
    if job.result.name:
        text += f" -> published {job.result.name} {job.result.version} (sha256 {job.result.sha256[:12]})"
    return text


@contextmanager
def step_bar(what: str) -> Iterator[Callable[[int, int, float, float], None]]:
    """An ``update(step, total, loss, tokens_per_s)`` callback drawing a step bar on stderr."""
    bar = tqdm(desc=what, unit="step", leave=True)
    try:
        def update(step: int, total: int, loss: float, tokens_per_s: float) -> None:
            if total and bar.total != total:
                bar.reset(total=total)
            bar.update(step - bar.n)
            bar.set_postfix(loss=f"{loss:.4g}", tok_s=f"{tokens_per_s:.0f}", refresh=False)

        yield update
    finally:
        bar.close()


async def watch_job(stub: tr_grpc.TrainingServiceStub, job_id: str) -> tr_pb2.TrainingJob:
    """Follow a job to its end with a progress bar; returns its final state."""
    job = tr_pb2.TrainingJob()
    with step_bar(f"train {job_id}") as update:
        async for reply in stub.WatchTrainingJob(tr_pb2.WatchTrainingJobRequest(job_id=job_id), timeout=7 * 86400):
            job = reply.job
            update(job.step, job.total_steps, job.train_loss, job.tokens_per_second)
    return job


def _exit_status(job: tr_pb2.TrainingJob) -> int:
    print(describe_job(job))
    return 0 if job.state == common_pb2.TRAINING_STATE_SUCCEEDED else 1


def _run_start(args: argparse.Namespace) -> int:
    if args.local:
        return _run_local(args)
    spec = spec_from_args(args)

    async def start(stub: tr_grpc.TrainingServiceStub) -> int:
        reply = await stub.StartTrainingJob(tr_pb2.StartTrainingJobRequest(spec=spec), timeout=DEFAULT_TIMEOUT_S)
        print(describe_job(reply.job))
        return _exit_status(await watch_job(stub, reply.job.id)) if args.watch else 0

    return asyncio.run(on_core(args.core, tr_grpc.TrainingServiceStub, start))


def _run_watch(args: argparse.Namespace) -> int:
    return _exit_status(asyncio.run(on_core(args.core, tr_grpc.TrainingServiceStub,
                                            lambda stub: watch_job(stub, args.job))))


def _run_cancel(args: argparse.Namespace) -> int:
    reply = asyncio.run(call_core(args.core, tr_grpc.TrainingServiceStub, lambda s: s.CancelTrainingJob,
                                  tr_pb2.CancelTrainingJobRequest(job_id=args.job)))
    print(f"cancel requested: {describe_job(reply.job)}")
    return 0


def _run_list(args: argparse.Namespace) -> int:
    reply = asyncio.run(call_core(args.core, tr_grpc.TrainingServiceStub, lambda s: s.ListTrainingJobs,
                                  tr_pb2.ListTrainingJobsRequest()))
    print(f"{'JOB':<17} {'NODE':<12} {'STATE':<10} {'STEP':>11} {'LOSS':>8}  {'OUTPUT':<28} ERROR")
    for job in reply.jobs:
        output = f"{job.spec.output_name}@{job.spec.output_version}"
        print(f"{job.id:<17} {job.node_id:<12} {state_word(job.state):<10} {f'{job.step}/{job.total_steps}':>11} "
              f"{job.train_loss:>8.4g}  {output:<28} {job.error}")
    return 0


# --- without daemons ----------------------------------------------------------------------------


def _run_local(args: argparse.Namespace) -> int:
    """The same trainer, in a worker process here; re-running the command resumes from its checkpoints."""
    if args.out is None or args.base == "serving":
        raise StartupError("--local needs --base DIR (a Hugging Face folder), --data FILE (JSONL) and --out DIR")
    from cmp.convert import train_settings  # torch: only for this command
    from netgpt.training.trainer import TrainConfig, TrainResult
    from netgpt.training.worker import TrainingProcess

    base, data = Path(args.base), Path(args.data)
    # train_settings returns TrainConfig's field names with values of their types, as dict[str, object]
    config = TrainConfig(**train_settings(training_settings(args)))  # type: ignore[arg-type]
    out: Path = args.out
    if out.exists():
        raise StartupError(f"{out} exists; choose a new --out folder")
    work = out.with_name(f".{out.name}.work")  # checkpoints: a re-run of the same command resumes

    async def run() -> TrainResult:
        worker = TrainingProcess()
        worker.start(base, data, work, config)
        with step_bar(f"train {base.name}") as update:
            async for p in worker.progress():
                update(p.step, p.total_steps, p.train_loss or 0.0, p.tokens_per_s)
        return await worker.result()

    try:
        result = asyncio.run(run())
    except NetGptError as exc:
        raise StartupError(str(exc)) from exc
    shutil.move(str(work / "output"), out)
    shutil.rmtree(work, ignore_errors=True)
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in sorted(result.metrics.items()))
    print(f"{out}: {config.method}, {result.steps} steps; {metrics}")
    return 0


# --- datasets -----------------------------------------------------------------------------------


def _run_dataset_publish(args: argparse.Namespace) -> int:
    from cli.transfers import publish_with_progress
    from netgpt.training.dataset import file_sha256, read_jsonl
    from netgpt.v1 import compute_plane_pb2 as cmp_pb2

    try:
        rows = read_jsonl(args.file)
    except NetGptError as exc:
        raise StartupError(str(exc)) from exc
    manifest = cmp_pb2.ModelManifest(name=args.name, version=args.version, kind=common_pb2.MODEL_KIND_DATASET,
                                     sha256=file_sha256(args.file),
                                     metadata={"format": "jsonl", "rows": str(len(rows)), "source": args.file.name})
    publish_with_progress(args.core, manifest, args.file)
    return 0
