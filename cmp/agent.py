"""Node-side model deployment, shared by edge and cloud: fetch → verify → stage → load → swap.

A deploy command (from the control-plane heartbeat stream) names an exact version
(name, version, sha256) and, from a current core, a fetch plan: the node fetches pieces from
several peers and the core at once (``cmp.peer_fetch``), checking each piece; without a
plan it downloads from the core's model store, resuming after dropped connections. Either
way the whole sha256 is checked, and the verified blob goes onto the node's shelf
(``BlobCache``) from which it serves peers; unpacks it into a fresh staging
folder (safely: no pickles, no paths leaving the folder) that is renamed into place
only when complete; loads it next to the serving model on a worker thread and runs one
forward pass; and only then swaps it into the :class:`ModelSlot` — so a half-written,
unverified or broken model never serves. Any failure leaves the slot untouched: the old
version keeps serving and the failure (one line + gRPC status code) is reported in the
next heartbeat. The previous version stays loaded for an instant rollback.

Commands run one at a time, in arrival order. The role-specific part is only the
``load(folder, ref)`` function (ONNX Runtime session on the edge, LoRA on the cloud).
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import structlog

from cmp.archive import unpack
from cmp.blob_cache import BlobCache
from cmp.convert import plan_from_proto, tallies_to_proto
from cmp.distribution import FetchPlan, Source, SourceTally
from cmp.peer_fetch import DEFAULT_PEER_POLICY, PeerFetch, PeerFetchPolicy
from cmp.transfer_client import fetch_to_file
from cmp.transfer_io import TransferStub
from netgpt.channels import open_channel
from netgpt.engine import LanguageModel, ModelLoadError
from netgpt.errors import DataLoss, FailedPrecondition, NetGptError, one_line
from netgpt.model_slot import ModelSlot, Served
from netgpt.tasks import TaskGroup
from netgpt.threads import in_own_thread
from netgpt.tls import Transport
from netgpt.v1 import blob_pb2_grpc as blob_grpc
from netgpt.v1 import common_pb2
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.words import enum_word

log = structlog.get_logger(__name__)

Loader = Callable[[Path, common_pb2.ModelRef], LanguageModel]  # runs on a worker thread
P = common_pb2  # phases: P.DEPLOYMENT_PHASE_*
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED,
             grpc.StatusCode.ABORTED, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN,
             grpc.StatusCode.RESOURCE_EXHAUSTED}


@dataclass(frozen=True)
class RetryPolicy:
    """How long a node keeps trying to fetch: a dropped connection resumes from the bytes it has."""

    attempts: int = 8
    first_backoff_s: float = 0.2
    max_backoff_s: float = 5.0
    timeout_s: float = 3600.0  # one fetch call; a whole multi-GB artifact must fit


@dataclass
class Deployment:
    """The node's record of one deploy or rollback command."""

    command_id: str
    ref: common_pb2.ModelRef
    rollback: bool = False
    phase: common_pb2.DeploymentPhase = P.DEPLOYMENT_PHASE_PENDING
    error: str = ""
    error_code: int = 0
    bytes_done: int = 0
    bytes_total: int = 0
    started_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    seconds: dict[str, float] = field(default_factory=dict)  # time spent in each phase left, e.g. "fetching"
    plan: FetchPlan | None = None  # where to fetch from; None: the core's FetchModel
    sources: list[SourceTally] = field(default_factory=list)  # where the bytes came from
    _entered: float = field(default_factory=time.perf_counter, repr=False)  # when the current phase began

    def set(self, phase: common_pb2.DeploymentPhase, **fields: object) -> None:
        now = time.perf_counter()
        left = enum_word(P.DeploymentPhase, self.phase)
        self.seconds[left] = self.seconds.get(left, 0.0) + now - self._entered
        self.phase, self.updated_at, self._entered = phase, time.time(), now
        for name, value in fields.items():
            setattr(self, name, value)
        log.info("deploy.phase", command_id=self.command_id, model=self.ref.name, version=self.ref.version,
                 phase=P.DeploymentPhase.Name(phase), seconds={k: round(v, 3) for k, v in self.seconds.items()},
                 **({"error": self.error} if self.error else {}))

    def progress(self, done: int, total: int) -> None:
        self.bytes_done, self.bytes_total, self.updated_at = done, total, time.time()

    def to_proto(self) -> common_pb2.DeploymentState:
        state = common_pb2.DeploymentState(
            command_id=self.command_id, model=self.ref, phase=self.phase, error=self.error,
            error_code=self.error_code, bytes_done=self.bytes_done, bytes_total=self.bytes_total,
            rollback=self.rollback, sources=tallies_to_proto(self.sources))
        state.started_at.FromNanoseconds(int(self.started_at * 1e9))
        state.updated_at.FromNanoseconds(int(self.updated_at * 1e9))
        return state


def status_code(exc: BaseException) -> grpc.StatusCode:
    """The status a failure is reported with: a model that cannot be used is FAILED_PRECONDITION."""
    if isinstance(exc, grpc.aio.AioRpcError):
        return exc.code()
    if isinstance(exc, NetGptError):
        return exc.code
    if isinstance(exc, ModelLoadError):
        return grpc.StatusCode.FAILED_PRECONDITION
    return grpc.StatusCode.UNKNOWN


def describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        details: str = exc.details() or exc.code().name
        return details
    return one_line(exc)


def same_version(a: common_pb2.ModelRef, b: common_pb2.ModelRef) -> bool:
    return (a.name, a.version, a.sha256) == (b.name, b.version, b.sha256)


class Deployer:
    def __init__(self, slot: ModelSlot, kind: common_pb2.ModelKind, load: Loader, core_address: str, work_dir: Path,
                 on_swap: Callable[[Served], None] = lambda served: None, retry: RetryPolicy = RetryPolicy(),
                 history: int = 8, blobs: BlobCache | None = None,
                 peer_policy: PeerFetchPolicy = DEFAULT_PEER_POLICY, node_id: str = "",
                 transport: Transport | None = None) -> None:
        self.slot = slot
        self.transport = transport  # the node's certificate, for the core and for peers (None: process default)
        self.kind = kind
        self.retry = retry
        self.fetch_attempts = 0  # FetchModel calls made (tests and logs see resumes)
        self.bytes_fetched = 0  # artifact bytes fetched from the core and peers (resumed parts counted once)
        self._load = load
        self._on_swap = on_swap
        self._history = history
        self._records: list[Deployment] = []  # newest last
        self._serving: Deployment | None = None  # the record that put slot.current in place
        self._folders: dict[Served, Path] = {}  # unpacked folders of deployed versions
        self._lock = asyncio.Lock()  # one command at a time, FIFO
        self._tasks = TaskGroup()
        self._channel = open_channel(core_address, transport)
        self._stub = TransferStub(self._channel)
        self._peer_policy = peer_policy
        self.node_id = node_id
        self._peer_channels: dict[str, grpc.aio.Channel] = {}
        self.work_dir = Path(work_dir)
        self.blobs = blobs if blobs is not None else BlobCache(self.work_dir / "blobs")
        self.artifacts, self.models, self.staging = (self.work_dir / d for d in ("artifacts", "models", "staging"))
        for stale in (self.models, self.staging):  # nothing serves from them at start; partial fetches stay
            shutil.rmtree(stale, ignore_errors=True)

    # --- commands from the control plane (sync: called from the heartbeat loop) -------------

    def handle(self, command: cp_pb2.NodeCommand) -> bool:
        """Start a deploy or rollback command in the background; False for other commands."""
        kind = command.WhichOneof("command")
        if kind not in ("deploy", "rollback"):
            return False
        if any(r.command_id == command.command_id for r in self._records):
            return True  # delivered twice: already under way or done
        record = Deployment(command.command_id or uuid.uuid4().hex, common_pb2.ModelRef(), rollback=kind == "rollback")
        if kind == "deploy":
            record.ref.CopyFrom(command.deploy.model)
            record.plan = plan_from_proto(record.ref, command.deploy.plan)
        self._records.append(record)
        self._tasks.start(self._run(record), f"deploy-{record.command_id}")
        return True

    def states(self) -> list[common_pb2.DeploymentState]:
        """Recent commands, newest first, for the heartbeat's NodeLoad.deployments."""
        return [r.to_proto() for r in reversed(self._records)]

    def record(self, command_id: str) -> Deployment | None:
        return next((r for r in self._records if r.command_id == command_id), None)

    async def idle(self) -> None:
        """Wait until no command is running (tests, graceful stop)."""
        await self._tasks.idle()

    async def close(self) -> None:
        await self._tasks.cancel_all()
        for channel in [self._channel, *self._peer_channels.values()]:
            await channel.close()

    # --- the work --------------------------------------------------------------------------

    async def _run(self, record: Deployment) -> None:
        async with self._lock:
            try:
                if record.rollback:
                    self._rollback(record)
                else:
                    await self._deploy(record)
            except asyncio.CancelledError:
                record.set(P.DEPLOYMENT_PHASE_FAILED, error="node stopping",
                           error_code=grpc.StatusCode.CANCELLED.value[0])
                raise
            except Exception as exc:
                code = status_code(exc)
                record.set(P.DEPLOYMENT_PHASE_FAILED, error=describe(exc), error_code=code.value[0])
                log.warning("deploy.failed", command_id=record.command_id, code=code.name, error=record.error,
                            serving=self.slot.current.ref.version)
            finally:
                self._trim()

    async def _deploy(self, record: Deployment) -> None:
        ref = record.ref
        if ref.kind != self.kind:
            raise FailedPrecondition(f"{ref.name} {ref.version} is a {P.ModelKind.Name(ref.kind)} artifact; this node "
                                     f"runs {P.ModelKind.Name(self.kind)}")
        if same_version(ref, self.slot.current.ref):
            record.set(P.DEPLOYMENT_PHASE_SERVING)  # nothing to do: keep the record, it is what serves
            return
        record.set(P.DEPLOYMENT_PHASE_FETCHING)
        artifact = await self._fetch(record)
        record.set(P.DEPLOYMENT_PHASE_VERIFYING)
        folder = await asyncio.to_thread(self._verify_and_stage, artifact, ref)
        record.set(P.DEPLOYMENT_PHASE_LOADING)
        try:
            model = await in_own_thread(self._load_and_check, folder, ref)  # torch: see netgpt.threads
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        served = Served(model, ref)
        self._folders[served] = folder
        self.slot.swap(served)  # one assignment on the event loop: the atomic switch
        if self._serving is not None:
            self._serving.set(P.DEPLOYMENT_PHASE_SUPERSEDED)
        self._serving = record
        record.set(P.DEPLOYMENT_PHASE_SERVING)
        self._after_swap(served)

    def _rollback(self, record: Deployment) -> None:
        undone = self._serving
        restored = self.slot.rollback()  # FAILED_PRECONDITION when there is nothing to go back to
        record.ref.CopyFrom(restored.ref)
        if undone is not None:
            undone.set(P.DEPLOYMENT_PHASE_ROLLED_BACK)
        self._serving = record
        record.set(P.DEPLOYMENT_PHASE_SERVING)
        self._after_swap(restored)

    async def _fetch(self, record: Deployment) -> Path:
        """The verified artifact on the shelf: held already, from the plan's sources, or from the core."""
        ref = record.ref
        try:
            held, size = self.blobs.blob(ref.sha256)
        except NetGptError:
            pass
        else:
            record.progress(size, size)
            return held
        self.artifacts.mkdir(parents=True, exist_ok=True)
        dest = self.artifacts / f"{ref.name}-{ref.version}-{ref.sha256[:16]}"
        if record.plan is not None:
            fetch = PeerFetch(record.plan, dest, self._blob_stub, self._peer_policy, record.progress, self.node_id)
            record.sources = fetch.tallies
            self.fetch_attempts += 1
            await fetch.run()
        else:
            await self._fetch_from_core(record, dest)
        self.bytes_fetched += dest.stat().st_size  # the verified whole: a resumed part counts once
        return await asyncio.to_thread(self.blobs.admit, dest, ref.sha256)

    def _blob_stub(self, source: Source) -> blob_grpc.BlobServiceStub:
        """The core's BlobService for the origin, one cached channel per peer address otherwise."""
        if source.origin or not source.address:
            return blob_grpc.BlobServiceStub(self._channel)
        channel = self._peer_channels.get(source.address)
        if channel is None:
            channel = self._peer_channels[source.address] = open_channel(source.address, self.transport)
        return blob_grpc.BlobServiceStub(channel)

    async def _fetch_from_core(self, record: Deployment, dest: Path) -> None:
        """FetchModel with resume: each retry continues the partial file."""
        ref = record.ref
        record.sources = [SourceTally(Source(origin=True))]
        backoff = self.retry.first_backoff_s
        for attempt in range(1, self.retry.attempts + 1):
            self.fetch_attempts += 1
            try:
                manifest = await fetch_to_file(self._stub, ref.name, ref.version, dest, resume=True,
                                               sha256=ref.sha256, progress=record.progress,
                                               timeout_s=self.retry.timeout_s)
            except (grpc.aio.AioRpcError, DataLoss) as exc:
                if attempt == self.retry.attempts or status_code(exc) not in RETRYABLE | {grpc.StatusCode.DATA_LOSS}:
                    raise
                part = dest.with_name(dest.name + ".part")
                log.warning("deploy.fetch.retry", command_id=record.command_id, attempt=attempt,
                            code=status_code(exc).name, error=describe(exc), retry_in_s=backoff,
                            resume_from=part.stat().st_size if part.exists() else 0)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.retry.max_backoff_s)
                continue
            # fetch_to_file hashed every byte as it arrived and matched it to the store's trailer;
            # the store served the version pinned to ref.sha256. Both must agree with the command.
            if manifest.sha256 != ref.sha256:
                dest.unlink(missing_ok=True)
                raise DataLoss(f"the store sent {ref.name} {ref.version} with sha256 {manifest.sha256}, "
                               f"the deploy names {ref.sha256}")
            record.sources[0].bytes = manifest.size_bytes
            return
        raise AssertionError("unreachable")

    def _verify_and_stage(self, artifact: Path, ref: common_pb2.ModelRef) -> Path:
        """Unpack the verified artifact safely into staging, then rename the complete folder into place.
        The artifact stays on the shelf for peers until a later swap drops it."""
        staging = self.staging / uuid.uuid4().hex
        try:
            unpacked = unpack(artifact, staging)
            final = self.models / f"{ref.name}-{ref.version}-{uuid.uuid4().hex[:8]}"
            final.parent.mkdir(parents=True, exist_ok=True)
            unpacked.rename(final)  # complete folders only, under models/
            return final
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _load_and_check(self, folder: Path, ref: common_pb2.ModelRef) -> LanguageModel:
        """Load, then one forward pass: a graph or adapter that loads but cannot run fails here, not on a user."""
        model = self._load(folder, ref)
        try:
            ids = model.tokenizer.encode("Hello", add_special_tokens=False) or [0]
            model.new_session().prefill(ids)
        except Exception as exc:
            raise ModelLoadError(f"{ref.name} {ref.version} loads but fails a first forward pass: "
                                 f"{one_line(exc)}") from exc
        return model

    def _after_swap(self, served: Served) -> None:
        """Advertise the new version, and delete unpacked folders neither current nor previous."""
        keep = {self.slot.current, self.slot.previous}
        for old in [s for s in self._folders if s not in keep]:
            shutil.rmtree(self._folders.pop(old), ignore_errors=True)
        self.blobs.keep(s.ref.sha256 for s in keep if s is not None)
        log.info("deploy.serving", model=served.ref.name, version=served.ref.version, sha256=served.ref.sha256,
                 previous=self.slot.previous.ref.version if self.slot.previous else "")
        self._on_swap(served)

    def _trim(self) -> None:
        done = [r for r in self._records if r.phase not in (P.DEPLOYMENT_PHASE_PENDING, P.DEPLOYMENT_PHASE_FETCHING,
                                                            P.DEPLOYMENT_PHASE_VERIFYING, P.DEPLOYMENT_PHASE_LOADING)]
        excess = len(self._records) - self._history
        for record in done[:max(excess, 0)]:
            if record is not self._serving:
                self._records.remove(record)
