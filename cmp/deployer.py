"""Node-side model deployment, shared by edge and cloud: fetch → verify → stage → load → swap.

A deploy command (from the control-plane heartbeat stream) names an exact version
(name, version, sha256) and, from a current core, a fetch plan; the verified artifact comes
onto the node's shelf (``cmp.artifact_fetch``), from which it also serves peers. The
deployer unpacks it into a fresh staging folder (safely: no pickles, no paths leaving the
folder) that is renamed into place only when complete; loads it next to the serving model on
a worker thread and runs one forward pass; and only then swaps it into the :class:`ModelSlot`
— so a half-written, unverified or broken model never serves. Any failure leaves the slot
untouched: the old version keeps serving and the failure (one line + gRPC status code) is
reported in the next heartbeat. The previous version stays loaded for an instant rollback.

Commands run one at a time, in arrival order. The role-specific part is only the
``load(folder, ref)`` function (ONNX Runtime session on the edge, LoRA on the cloud) and, for
what is not a language model (the edge's learned router), the ``check`` that replaces the
first forward pass.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, cast

import grpc
import structlog

from cmp.archive import unpack
from cmp.artifact_fetch import ArtifactFetcher
from cmp.blob_cache import BlobCache
from cmp.convert import plan_from_proto, tallies_to_proto
from cmp.distribution import FetchPlan, SourceTally
from cmp.node_kit import CoreLink, NodeRecord, RetryPolicy
from cmp.peer_fetch import DEFAULT_PEER_POLICY, PeerFetchPolicy
from netgpt.engine import LanguageModel, ModelLoadError
from netgpt.errors import FailedPrecondition, one_line
from netgpt.model_slot import M, ModelSlot, Served
from netgpt.tasks import TaskGroup
from netgpt.threads import in_own_thread
from netgpt.tls import Transport
from netgpt.v1 import common_pb2
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.words import enum_word

log = structlog.get_logger(__name__)

Loader = Callable[[Path, common_pb2.ModelRef], M]  # runs on a worker thread
Check = Callable[[M, common_pb2.ModelRef], None]  # raises when a loaded version cannot serve; worker thread
P = common_pb2  # phases: P.DEPLOYMENT_PHASE_*
RUNNING = (P.DEPLOYMENT_PHASE_PENDING, P.DEPLOYMENT_PHASE_FETCHING, P.DEPLOYMENT_PHASE_VERIFYING,
           P.DEPLOYMENT_PHASE_LOADING)


@dataclass
class Deployment(NodeRecord):
    """The node's record of one deploy or rollback command."""

    command_id: str
    ref: common_pb2.ModelRef
    rollback: bool = False
    phase: common_pb2.DeploymentPhase = P.DEPLOYMENT_PHASE_PENDING
    bytes_done: int = 0
    bytes_total: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # time spent in each phase left, e.g. "fetching"
    plan: FetchPlan | None = None  # where to fetch from; None: the core's FetchModel
    sources: list[SourceTally] = field(default_factory=list)  # where the bytes came from
    _entered: float = field(default_factory=time.perf_counter, repr=False)  # when the current phase began

    def set(self, phase: common_pb2.DeploymentPhase, /, **fields: object) -> None:
        now = time.perf_counter()
        left = enum_word(P.DeploymentPhase, self.phase)
        self.seconds[left] = self.seconds.get(left, 0.0) + now - self._entered
        self.phase, self._entered = phase, now
        self._update(**fields)
        log.info("deploy.phase", command_id=self.command_id, model=self.ref.name, version=self.ref.version,
                 phase=P.DeploymentPhase.Name(phase), seconds={k: round(v, 3) for k, v in self.seconds.items()},
                 **({"error": self.error} if self.error else {}))

    def progress(self, done: int, total: int) -> None:
        self._update(bytes_done=done, bytes_total=total)

    def to_proto(self) -> common_pb2.DeploymentState:
        return self._stamped(common_pb2.DeploymentState(
            command_id=self.command_id, model=self.ref, phase=self.phase, error=self.error,
            error_code=self.error_code, bytes_done=self.bytes_done, bytes_total=self.bytes_total,
            rollback=self.rollback, sources=tallies_to_proto(self.sources)))


def same_version(a: common_pb2.ModelRef, b: common_pb2.ModelRef) -> bool:
    return (a.name, a.version, a.sha256) == (b.name, b.version, b.sha256)


class ModelFolders(Generic[M]):
    """The unpacked deployed versions, under ``models/``; each is unpacked in ``staging/`` and
    renamed into place only when complete."""

    def __init__(self, work_dir: Path) -> None:
        self.models, self.staging = work_dir / "models", work_dir / "staging"
        self._held: dict[Served[M], Path] = {}
        for stale in (self.models, self.staging):  # nothing serves from them at start; partial fetches stay
            shutil.rmtree(stale, ignore_errors=True)

    def stage(self, artifact: Path, ref: common_pb2.ModelRef) -> Path:
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

    def hold(self, served: Served[M], folder: Path) -> None:
        self._held[served] = folder

    def keep(self, keep: Collection[Served[M] | None]) -> None:
        """Delete the folders of every version not in ``keep``."""
        for old in [s for s in self._held if s not in keep]:
            shutil.rmtree(self._held.pop(old), ignore_errors=True)


def first_forward_pass(model: LanguageModel, ref: common_pb2.ModelRef) -> None:
    """A graph or adapter that loads but cannot run fails here, not on a user."""
    try:
        ids = model.tokenizer.encode("Hello", add_special_tokens=False) or [0]
        model.new_session().prefill(ids)
    except Exception as exc:
        raise ModelLoadError(f"{ref.name} {ref.version} loads but fails a first forward pass: "
                             f"{one_line(exc)}") from exc


class Deployer(Generic[M]):
    """Runs the deploy and rollback commands for one model slot."""

    def __init__(self, slot: ModelSlot[M], kind: common_pb2.ModelKind, load: Loader[M], core_address: str,
                 work_dir: Path, on_swap: Callable[[Served[M]], None] = lambda served: None,
                 retry: RetryPolicy | None = None, history: int = 8, blobs: BlobCache | None = None,
                 peer_policy: PeerFetchPolicy = DEFAULT_PEER_POLICY, node_id: str = "",
                 transport: Transport | None = None, check: Check[M] | None = None) -> None:
        """``transport``: the node's certificate, for the core and for peers (None: process default).
        ``check``: what proves a loaded version can serve (None: a language model's first forward pass)."""
        self.slot = slot
        self.kind = kind
        self.work_dir = Path(work_dir)
        self.blobs = blobs if blobs is not None else BlobCache(self.work_dir / "blobs")
        self.fetcher = ArtifactFetcher(CoreLink(core_address, transport, retry or RetryPolicy()), self.blobs,
                                       self.work_dir / "artifacts", peer_policy, node_id, transport)
        self.folders: ModelFolders[M] = ModelFolders(self.work_dir)
        self._load = load
        self._check = check
        self._on_swap = on_swap
        self._history = history
        self._records: list[Deployment] = []  # newest last
        self._serving: Deployment | None = None  # the record that put slot.current in place
        self._lock = asyncio.Lock()  # one command at a time, FIFO
        self._tasks = TaskGroup()

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
        await self.fetcher.close()

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
                code = record.fail(P.DEPLOYMENT_PHASE_FAILED, exc)
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
        artifact = await self.fetcher.fetch(record)
        record.set(P.DEPLOYMENT_PHASE_VERIFYING)
        folder = await asyncio.to_thread(self.folders.stage, artifact, ref)
        record.set(P.DEPLOYMENT_PHASE_LOADING)
        try:
            model = await in_own_thread(self._load_and_check, folder, ref)  # torch: see netgpt.threads
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        served = Served(model, ref)
        self.folders.hold(served, folder)
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

    def _load_and_check(self, folder: Path, ref: common_pb2.ModelRef) -> M:
        """Load, then prove it serves (a language model: one forward pass)."""
        model = self._load(folder, ref)
        if self._check is not None:
            self._check(model, ref)
        else:  # no check given: the slot holds a language model (M's default)
            first_forward_pass(cast(LanguageModel, model), ref)
        return model

    def _after_swap(self, served: Served[M]) -> None:
        """Advertise the new version, and delete unpacked folders neither current nor previous."""
        keep = {self.slot.current, self.slot.previous}
        self.folders.keep(keep)
        self.blobs.keep(s.ref.sha256 for s in keep if s is not None)
        log.info("deploy.serving", model=served.ref.name, version=served.ref.version, sha256=served.ref.sha256,
                 previous=self.slot.previous.ref.version if self.slot.previous else "")
        self._on_swap(served)

    def _trim(self) -> None:
        done = [r for r in self._records if r.phase not in RUNNING]
        excess = len(self._records) - self._history
        for record in done[:max(excess, 0)]:
            if record is not self._serving:
                self._records.remove(record)
