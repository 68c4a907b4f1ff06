"""Node-side fine-tuning, shared by edge and cloud: fetch inputs → train on a worker → package → publish.

A ``start_training`` command (from the control-plane heartbeat stream) names a job, its spec,
and the exact dataset and base versions the core resolved. The node fetches them from the
core's model store (sha256-pinned, resumable), trains in a worker process (so serving is not
starved; ``netgpt.training.worker``), and on success packages the result with the role's
injected :data:`Packager` (the edge's parity-checked ONNX artifact, the cloud's LoRA adapter
tar) and publishes it as the spec's output version, with its lineage (base, dataset sha256,
hyper-parameters, metrics) in the manifest metadata.

Each job lives in ``work_dir/training/<job_id>/``: ``command.pb`` (present while the job is in
progress), ``inputs/``, ``work/`` (the trainer's checkpoints) and ``package/``. A node that
stops mid-job keeps that folder; on its next start :meth:`TrainingAgent.resume` restarts every
job found there and the trainer continues from its last checkpoint. A cancelled or failed
job publishes nothing and its folder is deleted. Jobs run one at a time, in arrival order;
the role-specific parts are only ``package`` and ``serving_base``.

Every checkpoint the trainer writes is also uploaded to the core's store (``cmp.checkpoint_sync``),
and a job that starts with no checkpoint of its own fetches the newest stored one: a job the core
moves here from a lost node resumes where that node's last upload was. The worker dies with the
node process, and holds a lock on ``work/`` while it trains (``netgpt.training.guards``).
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from cmp.archive import unpack
from cmp.blobio import atomic_write
from cmp.checkpoint_sync import CheckpointUploader, restore_latest
from cmp.convert import METHODS, train_settings
from cmp.node_kit import CoreLink, NodeRecord, RetryPolicy
from netgpt.tasks import TaskGroup
from netgpt.threads import in_own_thread
from netgpt.tls import Transport
from netgpt.v1 import common_pb2
from netgpt.v1 import compute_plane_pb2 as cmp_pb2
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.words import enum_word

if TYPE_CHECKING:  # torch: imported only when a job runs
    from netgpt.training.trainer import TrainResult
    from netgpt.training.worker import TrainingProcess

log = structlog.get_logger(__name__)

S = common_pb2  # states: S.TRAINING_STATE_*
COMMAND_FILE = "command.pb"


@dataclass(frozen=True)
class BaseModel:
    """A trainable Hugging Face folder and what lineage records about it."""

    folder: Path
    name: str
    version: str = ""
    sha256: str = ""


@dataclass(frozen=True)
class PackageRequest:
    trained: Path  # the trainer's output: an adapter folder (lora) or a full model folder (full)
    method: str  # "lora" | "full"
    base: BaseModel
    out_dir: Path  # an empty folder for the artifact
    quantization: str = ""  # the edge graph asked for (fp32 | int8 | int4); "" = the node's own setting


@dataclass(frozen=True)
class Package:
    """What the role's packager made: one file to publish, and its manifest facts."""

    path: Path
    kind: common_pb2.ModelKind
    base_model: str
    metadata: dict[str, str] = field(default_factory=dict)


Packager = Callable[[PackageRequest], Package]  # runs on a worker thread
ServingBase = Callable[[], BaseModel]  # the node's serving model as a trainable folder


@dataclass
class TrainingRecord(NodeRecord):
    """The node's record of one job, reported in every heartbeat."""

    command: cp_pb2.StartTrainingCommand
    state: common_pb2.TrainingState = S.TRAINING_STATE_PLACED
    step: int = 0
    total_steps: int = 0
    train_loss: float = 0.0
    eval_loss: float = 0.0
    tokens_per_second: float = 0.0
    eta_s: float = 0.0
    result: common_pb2.ModelRef = field(default_factory=common_pb2.ModelRef)
    resumed_from_step: int = -1  # the step this process's run started from (> 0: resumed)
    cancel_requested: bool = False

    @property
    def job_id(self) -> str:
        return self.command.job_id

    @property
    def done(self) -> bool:
        return self.state in (S.TRAINING_STATE_SUCCEEDED, S.TRAINING_STATE_FAILED, S.TRAINING_STATE_CANCELLED)

    def set(self, state: common_pb2.TrainingState, /, **fields: Any) -> None:
        self.state = state
        self._update(**fields)
        log.info("training.job", job_id=self.job_id, state=enum_word(common_pb2.TrainingState, state),
                 step=self.step, total_steps=self.total_steps, **({"error": self.error} if self.error else {}))

    def progress(self, step: int, total: int, train_loss: float | None, eval_loss: float | None,
                 tokens_per_s: float, eta_s: float | None) -> None:
        self._update(step=step, total_steps=total)
        self.train_loss = _finite(train_loss, self.train_loss)
        self.eval_loss = _finite(eval_loss, self.eval_loss)
        self.tokens_per_second = _finite(tokens_per_s, self.tokens_per_second)
        self.eta_s = _finite(eta_s, self.eta_s)

    def to_proto(self) -> common_pb2.TrainingJobState:
        return self._stamped(common_pb2.TrainingJobState(
            job_id=self.job_id, state=self.state, step=self.step, total_steps=self.total_steps,
            train_loss=self.train_loss, eval_loss=self.eval_loss, tokens_per_second=self.tokens_per_second,
            eta_s=self.eta_s, error=self.error, error_code=self.error_code, result=self.result))


def _finite(value: float | None, default: float) -> float:
    return value if value is not None and math.isfinite(value) else default


class Cancelled(Exception):
    """The job was cancelled on request (not: the node is stopping)."""


def lineage(command: cp_pb2.StartTrainingCommand, base: BaseModel, result: TrainResult) -> dict[str, str]:
    """Manifest metadata recording where a trained version came from."""
    spec, data = command.spec, command.dataset
    facts = {
        "lineage.job_id": command.job_id,
        "lineage.method": METHODS.get(spec.method, ""),
        "lineage.base_model": base.name,
        "lineage.base_version": base.version or "serving",
        "lineage.base_sha256": base.sha256,
        "lineage.dataset": data.name,
        "lineage.dataset_version": data.version,
        "lineage.dataset_sha256": data.sha256,
        "lineage.steps": str(result.steps),
        "lineage.trainable_params": str(result.trainable_params),
        "lineage.total_params": str(result.total_params),
        "lineage.hyper_parameters": json.dumps(train_settings(spec), sort_keys=True),
    }
    facts.update({f"metric.{k}": f"{v:.6g}" for k, v in sorted(result.metrics.items())})
    return facts


class TrainingAgent:
    """Runs the fine-tuning jobs the core places on this node."""

    def __init__(self, core_address: str, work_dir: Path, package: Packager, serving_base: ServingBase,
                 threads: int = 0, retry: RetryPolicy | None = None, history: int = 8,
                 transport: Transport | None = None) -> None:
        self.root = Path(work_dir) / "training"
        self.threads = threads  # default CPU budget of a job's worker (0: the trainer's default)
        self._package = package
        self._serving_base = serving_base
        self._history = history
        self._records: dict[str, TrainingRecord] = {}  # insertion order = arrival order
        self._workers: dict[str, TrainingProcess] = {}  # job id -> its worker
        self._lock = asyncio.Lock()  # one job at a time, FIFO
        self._tasks = TaskGroup()
        self._core = CoreLink(core_address, transport, retry or RetryPolicy())

    # --- commands from the control plane (sync: called from the heartbeat loop) -------------

    def handle(self, command: cp_pb2.NodeCommand) -> bool:
        """Start or cancel a job in the background; False for other commands."""
        kind = command.WhichOneof("command")
        if kind == "start_training":
            self._start(command.start_training, persist=True)
            return True
        if kind == "cancel_training":
            self.cancel(command.cancel_training.job_id)
            return True
        return False

    def resume(self) -> list[str]:
        """Restart every job a previous run of this node left in progress; their ids."""
        resumed = []
        for path in sorted(self.root.glob(f"*/{COMMAND_FILE}")):
            try:
                command = cp_pb2.StartTrainingCommand.FromString(path.read_bytes())
            except Exception as exc:
                log.warning("training.unreadable_job", path=str(path), error=str(exc))
                shutil.rmtree(path.parent, ignore_errors=True)
                continue
            log.info("training.resuming", job_id=command.job_id)
            self._start(command, persist=False)
            resumed.append(command.job_id)
        return resumed

    def cancel(self, job_id: str) -> None:
        record = self._records.get(job_id)
        if record is None or record.done:
            return
        record.cancel_requested = True
        worker = self._workers.get(job_id)
        if worker is not None:
            worker.cancel()
        log.info("training.cancel", job_id=job_id, state=enum_word(common_pb2.TrainingState, record.state))

    def states(self) -> list[common_pb2.TrainingJobState]:
        """Recent jobs, newest first, for the heartbeat's NodeLoad.training."""
        return [r.to_proto() for r in reversed(list(self._records.values()))]

    def record(self, job_id: str) -> TrainingRecord | None:
        return self._records.get(job_id)

    async def idle(self) -> None:
        await self._tasks.idle()

    async def close(self) -> None:
        """Stop: workers are killed, job folders kept, so the next start resumes them."""
        await self._tasks.cancel_all()
        await self._core.close()

    # --- the work --------------------------------------------------------------------------

    def _start(self, command: cp_pb2.StartTrainingCommand, persist: bool) -> None:
        known = self._records.get(command.job_id)
        if known is not None:
            if not (persist and known.done and known.state != S.TRAINING_STATE_SUCCEEDED):
                return  # delivered twice (e.g. by a restarted core): already under way or done
            del self._records[command.job_id]  # cancelled here when it moved away; the core placed it here again
        record = TrainingRecord(command)
        self._records[command.job_id] = record
        if persist:
            atomic_write(self.root / command.job_id / COMMAND_FILE, command.SerializeToString(deterministic=True))
        self._tasks.start(self._run(record), f"train-{command.job_id}")
        self._trim()

    async def _run(self, record: TrainingRecord) -> None:
        folder = self.root / record.job_id
        bound = log.bind(job_id=record.job_id)
        async with self._lock:
            try:
                if record.cancel_requested:
                    raise Cancelled()
                record.set(S.TRAINING_STATE_RUNNING)
                base, dataset = await self._inputs(record, folder / "inputs")
                restored = await restore_latest(self._core, record.job_id, folder / "work" / "checkpoints",
                                                folder / "restore")  # moved here from a lost node
                if restored:  # the step it goes on from (the lost node may have reported a later one)
                    total = record.command.spec.hyper_parameters.max_steps or record.total_steps
                    record.progress(restored, total, None, None, 0.0, None)
                result = await self._train(record, base, dataset, folder / "work")
                if record.cancel_requested:
                    raise Cancelled()
                out = folder / "package"
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir(parents=True)
                package = await in_own_thread(self._package, PackageRequest(  # torch: see netgpt.threads
                    result.output_dir, result.method, base, out, record.command.spec.quantization))
                if record.cancel_requested:
                    raise Cancelled()
                ref = await self._publish(record, package, lineage(record.command, base, result))
                record.set(S.TRAINING_STATE_SUCCEEDED, result=ref, eta_s=0.0)
                bound.info("training.published", model=ref.name, version=ref.version, sha256=ref.sha256)
            except asyncio.CancelledError:  # the node is stopping: keep the folder, resume on the next start
                bound.info("training.suspended", step=record.step)
                raise
            except Exception as exc:
                if record.cancel_requested:
                    record.set(S.TRAINING_STATE_CANCELLED)
                else:
                    code = record.fail(S.TRAINING_STATE_FAILED, exc)
                    bound.warning("training.failed", code=code.name, error=record.error)
                shutil.rmtree(folder, ignore_errors=True)
            else:
                shutil.rmtree(folder, ignore_errors=True)
            finally:
                self._workers.pop(record.job_id, None)

    async def _inputs(self, record: TrainingRecord, inputs: Path) -> tuple[BaseModel, Path]:
        """The dataset file and the base folder, fetched (and unpacked) once per job."""
        inputs.mkdir(parents=True, exist_ok=True)
        data = record.command.dataset
        dataset = inputs / "dataset.jsonl"
        if not dataset.is_file():
            await self._fetch(record, data, dataset)
        ref = record.command.base
        if not ref.name:
            return await asyncio.to_thread(self._serving_base), dataset
        folder = inputs / "base"
        if not folder.is_dir():
            archive = inputs / "base.tar"
            await self._fetch(record, ref, archive)
            staging = inputs / "base-staging"
            shutil.rmtree(staging, ignore_errors=True)  # left by a run stopped mid-unpack
            unpacked = await asyncio.to_thread(unpack, archive, staging)
            unpacked.rename(folder)  # complete folders only
            shutil.rmtree(staging, ignore_errors=True)
            archive.unlink(missing_ok=True)
        return BaseModel(folder, ref.name, ref.version, ref.sha256), dataset

    async def _fetch(self, record: TrainingRecord, ref: common_pb2.ModelRef, dest: Path) -> None:
        await self._core.fetch(ref, dest, "training.fetch.retry", job_id=record.job_id, model=ref.name)

    async def _train(self, record: TrainingRecord, base: BaseModel, dataset: Path, work: Path) -> TrainResult:
        """Runs the trainer in a worker process, reporting its progress into ``record``."""
        from netgpt.training.trainer import TrainConfig  # torch: only on nodes that train
        from netgpt.training.worker import TrainingProcess

        settings = train_settings(record.command.spec)
        if self.threads and "threads" not in settings:
            settings["threads"] = self.threads
        base_id = f"{base.name}@{base.version}#{base.sha256}" if base.sha256 else ""  # the same on every node
        config = TrainConfig(**settings, base_id=base_id)  # type: ignore[arg-type]
        worker = TrainingProcess()
        uploads = CheckpointUploader(self._core, record.job_id, work.parent / "upload")
        self._workers[record.job_id] = worker
        if record.cancel_requested:
            raise Cancelled()
        work.mkdir(parents=True, exist_ok=True)
        worker.start(base.folder, dataset, work, config)
        try:
            async for p in worker.progress():
                if p.state == "loading":  # step 0 until a checkpoint is restored: keep the last report
                    continue
                if p.state == "checkpoint":  # into the store, so the job can resume on another node
                    uploads.offer(work / "checkpoints" / f"step-{p.step}", p.step)
                if record.resumed_from_step < 0:
                    record.resumed_from_step = p.step - 1  # the first step this run made started here
                record.progress(p.step, p.total_steps, p.train_loss, p.eval_loss, p.tokens_per_s, p.eta_s)
            return await worker.result()
        except asyncio.CancelledError:  # the node is stopping: stop the child, keep its checkpoints
            await asyncio.shield(worker.close())
            raise
        finally:
            await uploads.close()

    async def _publish(self, record: TrainingRecord, package: Package,
                       metadata: dict[str, str]) -> common_pb2.ModelRef:
        spec = record.command.spec
        manifest = cmp_pb2.ModelManifest(name=spec.output_name, version=spec.output_version, kind=package.kind,
                                         base_model=package.base_model, metadata={**package.metadata, **metadata})
        reply = await self._core.publish(manifest, package.path)
        m = reply.manifest
        return common_pb2.ModelRef(name=m.name, version=m.version, sha256=m.sha256, kind=m.kind,
                                   base_model=m.base_model if m.kind == common_pb2.MODEL_KIND_LORA_ADAPTER else "")

    def _trim(self) -> None:
        finished = [r for r in self._records.values() if r.done]
        for record in finished[:max(len(self._records) - self._history, 0)]:
            del self._records[record.job_id]
