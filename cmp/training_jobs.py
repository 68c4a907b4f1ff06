"""The core's side of fine-tuning jobs: validate a spec, resolve its inputs in the model store,
place it on a node, queue start/cancel commands, and merge what the nodes report.

A job is placed on the least loaded serving node of its role (nodes already training count
first), or on the node the spec names. The node does the work and reports the job's progress
in every heartbeat (``NodeLoad.training``, see ``cmp.training_agent``); the book merges those
reports lazily, whenever a job is read, so Watch is a loop over reads that yields changes.
Jobs are kept behind a small :class:`~cmp.job_store.JobStore` (memory, or a table of the core's
SQLite file), so a restarted core still knows them; the nodes re-report the ones they run.

Nodes that go away (:meth:`JobBook.supervise`, run by the core every heartbeat interval and on
every read): a job whose node is LOST (or, after a core restart, has not registered again within
``lost_after_s``) is taken from it and placed on another serving node of its role, never one it
was taken from; that node resumes from the job's last checkpoint in the store (the node uploads
one every ``checkpoint_every`` steps). A job that finds no node for ``unplaced_timeout_s`` fails
with the reason. A node that reports a job it no longer owns gets a cancel, and
:meth:`JobBook.check_publish` refuses its result and its checkpoints (FAILED_PRECONDITION).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, nullcontext

import grpc
import structlog

from cmp.commands import cancel_training_command, start_training_command
from cmp.convert import job_to_proto, manifest_ref
from cmp.job_store import JobStore, MemoryJobStore
from cmp.manifest import NAME_RE, Manifest, check_name
from cmp.nodes import NodeDirectory
from cmp.records import TERMINAL, Job, checkpoint_model
from cmp.store import ModelStore
from netgpt.config import EDGE_QUANTIZATION_CHOICES
from netgpt.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from netgpt.node_status import least_loaded_key
from netgpt.v1 import common_pb2, training_pb2
from netgpt.words import enum_word

log = structlog.get_logger(__name__)

S = common_pb2  # states: S.TRAINING_STATE_*
ROLE_METHODS = {  # what each role trains, and publishes: GPT-2 (edge artifact), LLaMA (LoRA adapter)
    common_pb2.NODE_ROLE_EDGE: {training_pb2.TRAINING_METHOD_LORA, training_pb2.TRAINING_METHOD_FULL},
    common_pb2.NODE_ROLE_CLOUD: {training_pb2.TRAINING_METHOD_LORA},
}
MODULE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,63}")
MAX_NAME_CHARS = 128
WATCH_POLL_S = 0.1


def _field_error(field_name: str, message: str) -> InvalidArgument:
    return InvalidArgument(f"{field_name}: {message}")


def _check_ref(field_name: str, ref: training_pb2.StoredVersion) -> None:
    for part in ("name", "version"):
        value = getattr(ref, part)
        if not value:
            raise _field_error(f"{field_name}.{part}", "required")
        if not NAME_RE.fullmatch(value):
            raise _field_error(f"{field_name}.{part}", f"{value[:40]!r} must match {NAME_RE.pattern}")


def validate_spec(spec: training_pb2.TrainingJobSpec) -> None:
    """INVALID_ARGUMENT naming the first bad field of ``spec``; nothing else is checked here."""
    if len(spec.name) > MAX_NAME_CHARS:
        raise _field_error("spec.name", f"at most {MAX_NAME_CHARS} characters")
    if spec.role not in ROLE_METHODS:
        raise _field_error("spec.role", "must be NODE_ROLE_EDGE or NODE_ROLE_CLOUD")
    if spec.method not in (training_pb2.TRAINING_METHOD_LORA, training_pb2.TRAINING_METHOD_FULL):
        raise _field_error("spec.method", "must be TRAINING_METHOD_LORA or TRAINING_METHOD_FULL")
    if spec.method not in ROLE_METHODS[spec.role]:
        raise _field_error("spec.method", "cloud nodes train LoRA adapters (full fine-tuning is for the edge's "
                                          "small GPT-2)")
    if not spec.HasField("dataset"):
        raise _field_error("spec.dataset", "required (a JSONL dataset version in the model store)")
    _check_ref("spec.dataset", spec.dataset)
    if spec.HasField("base"):
        _check_ref("spec.base", spec.base)
    for part in ("output_name", "output_version"):
        if not getattr(spec, part):
            raise _field_error(f"spec.{part}", "required (the version the result is published as)")
        check_name(f"spec.{part}", getattr(spec, part))
    if spec.quantization and spec.quantization not in EDGE_QUANTIZATION_CHOICES:
        raise _field_error("spec.quantization",
                           f"{spec.quantization[:16]!r}: one of {', '.join(EDGE_QUANTIZATION_CHOICES)}")
    if spec.quantization and spec.role != common_pb2.NODE_ROLE_EDGE:
        raise _field_error("spec.quantization", "only edge results are ONNX graphs (a cloud job publishes an adapter)")
    lora = spec.lora
    if spec.method == training_pb2.TRAINING_METHOD_LORA:
        if lora.rank > 1024:
            raise _field_error("spec.lora.rank", f"at most 1024, got {lora.rank}")
        if not 0 <= lora.alpha <= 1e4:
            raise _field_error("spec.lora.alpha", f"in [0, 10000], got {lora.alpha:g}")
        if not 0 <= lora.dropout < 1:
            raise _field_error("spec.lora.dropout", f"in [0, 1), got {lora.dropout:g}")
        if len(lora.target_modules) > 32:
            raise _field_error("spec.lora.target_modules", "at most 32 names")
        for module in lora.target_modules:
            if not MODULE_RE.fullmatch(module):
                raise _field_error("spec.lora.target_modules", f"{module[:40]!r} is not a module name")
    hp = spec.hyper_parameters
    limits = {"max_steps": 1_000_000, "batch_size": 1024, "warmup_steps": 1_000_000, "max_seq_len": 65_536,
              "checkpoint_every": 1_000_000, "eval_every": 1_000_000, "threads": 256}
    for name, most in limits.items():
        if getattr(hp, name) > most:
            raise _field_error(f"spec.hyper_parameters.{name}", f"at most {most}, got {getattr(hp, name)}")
    if not 0 <= hp.learning_rate <= 1:
        raise _field_error("spec.hyper_parameters.learning_rate", f"in [0, 1], got {hp.learning_rate:g}")
    if not 0 <= hp.weight_decay <= 1:
        raise _field_error("spec.hyper_parameters.weight_decay", f"in [0, 1], got {hp.weight_decay:g}")
    if not 0 <= hp.eval_fraction < 1:
        raise _field_error("spec.hyper_parameters.eval_fraction", f"in [0, 1), got {hp.eval_fraction:g}")


def _resolve(store: ModelStore, field_name: str, ref: training_pb2.StoredVersion, kind: str) -> Manifest:
    """The stored version ``ref`` names (NOT_FOUND when unknown), of ``kind`` and its pinned sha256."""
    try:
        manifest = store.describe(ref.name, ref.version)
    except NotFound as exc:
        raise NotFound(f"{field_name}: {exc}") from None
    if manifest.kind != kind:
        raise _field_error(field_name, f"{ref.name} {ref.version} is a {manifest.kind} version, not a {kind}")
    if ref.sha256 and ref.sha256 != manifest.sha256:
        raise _field_error(f"{field_name}.sha256", f"{ref.name} {ref.version} has sha256 {manifest.sha256}, "
                                                   f"not {ref.sha256[:64]!r}")
    return manifest


class JobBook:
    """Every fine-tuning job the core knows, newest last."""

    def __init__(self, nodes: NodeDirectory, store: ModelStore, jobs: JobStore | None = None,
                 clock: Callable[[], float] = time.time, poll_s: float = WATCH_POLL_S,
                 lost_after_s: float = 0.0, unplaced_timeout_s: float = 300.0, checkpoint_every: int = 0,
                 supervising: Callable[[], bool] = lambda: True, shared: bool = False,
                 timer: Callable[[], float] = time.monotonic,
                 placing: Callable[[], AbstractContextManager[object]] = nullcontext) -> None:
        """``lost_after_s``: a job whose node is lost (or unregistered this long) moves; 0: jobs never move.
        ``unplaced_timeout_s``: a job with no node this long fails. ``checkpoint_every``: the steps between
        the checkpoints a job uploads to the store, when its spec sets none (0: none). Core replicas:
        ``supervising`` says whether this one moves and fails jobs now (it holds the lease); ``shared``: the
        store is the replicas' common one, so jobs another replica started are taken in when asked for, and
        :meth:`take_over` takes every unfinished job as stored when this replica starts to supervise;
        ``placing``: the lock replicas place jobs under, so that two never pick from the same picture."""
        self._nodes = nodes
        self._store = store
        self._saved = jobs if jobs is not None else MemoryJobStore()
        self._clock = clock
        self._timer = timer
        self._poll_s = poll_s
        self.lost_after_s = lost_after_s
        self.unplaced_timeout_s = unplaced_timeout_s
        self.checkpoint_every = checkpoint_every
        self._jobs: dict[str, Job] = {}
        self._supervising, self._shared, self._placing = supervising, shared, placing
        now = timer()
        for job in self._saved.load():
            job.requeue = not job.done
            job.node_seen_at = job.unplaced_since = now
            self._jobs[job.id] = job
        if self._jobs:
            log.info("training.jobs_restored", jobs=len(self._jobs),
                     running=sum(not j.done for j in self._jobs.values()))

    # --- requests ---------------------------------------------------------------------------

    def start(self, request_spec: training_pb2.TrainingJobSpec) -> Job:
        """Validate, resolve the inputs, place, and queue the start command with the node's next heartbeat."""
        spec = request_spec
        validate_spec(spec)
        dataset = _resolve(self._store, "spec.dataset", spec.dataset, "dataset")
        base = _resolve(self._store, "spec.base", spec.base, "checkpoint") if spec.HasField("base") else None
        if self.checkpoint_every and not spec.hyper_parameters.checkpoint_every:  # so the job can move
            spec = training_pb2.TrainingJobSpec()
            spec.CopyFrom(request_spec)
            spec.hyper_parameters.checkpoint_every = self.checkpoint_every
        with self._placing():  # what other replicas placed is in the store before this one looks
            if self._shared:
                self._take_in_new()
            self._check_output_free(spec)
            node = self._place(spec)
            job = Job(id=uuid.uuid4().hex[:16], spec=spec, node_id=node.info.node_id,
                      base=manifest_ref(base) if base else common_pb2.ModelRef(), dataset=manifest_ref(dataset),
                      created_at=self._clock(), node_seen_at=self._timer())
            self._set(job, S.TRAINING_STATE_PLACED)
            self._jobs[job.id] = job
            self._nodes.queue_command(job.node_id, start_training_command(job))
            self._saved.save(job)
        log.info("training.placed", job_id=job.id, node_id=job.node_id, role=enum_word(common_pb2.NodeRole, spec.role),
                 method=enum_word(training_pb2.TrainingMethod, spec.method), dataset=f"{dataset.name}@"
                 f"{dataset.version}", base=f"{base.name}@{base.version}" if base else "serving",
                 output=f"{spec.output_name}@{spec.output_version}")
        return job

    def get(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None and self._shared:
            self._take_in_new()
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"training job {job_id[:64]!r} is not known")
        self._refresh()
        return job

    def list(self) -> list[Job]:
        """Newest first."""
        if self._shared:
            self._take_in_new()
        self._refresh()
        return sorted(self._jobs.values(), key=lambda j: j.created_at, reverse=True)

    def cancel(self, job_id: str) -> Job:
        """Ask the node to stop the job; a job already finished is returned as it is."""
        job = self.get(job_id)
        if job.done:
            return job
        job.cancel_requested = True
        try:
            self._nodes.queue_command(job.node_id, cancel_training_command(job.id))
        except NotFound:  # its node is gone: nobody is training it
            self._set(job, S.TRAINING_STATE_CANCELLED)
        self._saved.save(job)
        log.info("training.cancel_requested", job_id=job.id, node_id=job.node_id)
        return job

    async def watch(self, job_id: str) -> AsyncIterator[Job]:
        """The job now, then each time it changes, until it is in a terminal state."""
        job = self.get(job_id)
        last = b""
        while True:
            self._refresh()
            job = self._jobs.get(job_id, job)  # take_over() may have replaced the record with the stored one
            now = job_to_proto(job).SerializeToString(deterministic=True)
            if now != last:
                last = now
                yield job
            if job.done:
                return
            await asyncio.sleep(self._poll_s)

    # --- merging node reports ------------------------------------------------------------------

    def _refresh(self) -> None:
        """Take every node's latest reports of its jobs (from its last heartbeat), cancel the jobs a
        node reports but no longer owns, and move the jobs of lost nodes (:meth:`supervise`)."""
        if not self._jobs:
            return
        statuses = self._nodes.statuses()
        for status in statuses:
            node_id = status.info.node_id
            reported = {r.job_id: r for r in status.load.training}
            for foreign in reported.values():
                owned = self._jobs.get(foreign.job_id)
                if owned is not None and owned.node_id != node_id and foreign.state not in TERMINAL:
                    self._revoke(owned, status)
            for job in self._jobs.values():
                if job.done or job.node_id != node_id:
                    continue
                report = reported.get(job.id)
                if report is not None:
                    self._merge(job, report)
                elif job.requeue:  # restored by a restarted core; the node does not know it (yet)
                    job.requeue = False
                    self._nodes.queue_command(job.node_id, start_training_command(job))
        if self._supervising():
            self._supervise({s.info.node_id: s for s in statuses})

    def _take_in_new(self) -> None:
        """The jobs other replicas started since this one last looked (the store is shared)."""
        now = self._timer()
        for job in self._saved.load():
            if job.id not in self._jobs:
                job.node_seen_at = job.unplaced_since = now
                self._jobs[job.id] = job

    def take_over(self) -> int:
        """This replica supervises from now on: take the store's copy of every job it has not seen finish
        (another replica may have moved, cancelled or failed it meanwhile); returns how many changed."""
        now, changed = self._timer(), 0
        for stored in self._saved.load():
            known = self._jobs.get(stored.id)
            if known is not None and (known.done or job_to_proto(known) == job_to_proto(stored)):
                continue
            stored.node_seen_at = known.node_seen_at if known is not None else now
            stored.unplaced_since = known.unplaced_since if known is not None else now
            self._jobs[stored.id] = stored
            changed += 1
        if changed:
            log.info("training.jobs_taken_over", jobs=changed)
        return changed

    def supervise(self) -> None:
        """Move the jobs of lost nodes, place the jobs waiting for a node, fail those that waited too long."""
        self._refresh()

    def _supervise(self, statuses: dict[str, common_pb2.NodeStatus]) -> None:
        if self.lost_after_s <= 0:
            return
        now = self._timer()
        for job in self._jobs.values():
            if job.done:
                continue
            if job.node_id:
                status = statuses.get(job.node_id)
                if status is not None and status.health != common_pb2.NODE_HEALTH_LOST:
                    job.node_seen_at = now
                    continue
                if status is None and now - job.node_seen_at <= self.lost_after_s:
                    continue  # not registered (yet): a restarted core gives its nodes time to come back
                self._take_from_node(job, now, "lost" if status is not None else "not registered")
            if job.cancel_requested:  # nobody is training it any more: the cancel is done
                self._set(job, S.TRAINING_STATE_CANCELLED)
                self._saved.save(job)
                continue
            self._place_again(job, statuses, now)

    def _take_from_node(self, job: Job, now: float, why: str) -> None:
        old = job.node_id
        job.lost_nodes.add(old)
        job.node_id, job.unplaced_since, job.requeue = "", now, False
        step = job.report.step
        self._set(job, S.TRAINING_STATE_PLACED)
        self._saved.save(job)
        log.warning("training.node_lost", job_id=job.id, node_id=old, why=why, step=step)

    def _place_again(self, job: Job, statuses: dict[str, common_pb2.NodeStatus], now: float) -> None:
        spec = job.spec
        candidates = [s for s in statuses.values() if s.info.role == spec.role
                      and s.health == common_pb2.NODE_HEALTH_SERVING and s.info.node_id not in job.lost_nodes
                      and (not spec.node_id or s.info.node_id == spec.node_id)]
        if candidates:
            node = min(candidates, key=lambda s: (self._training_on(s.info.node_id), *least_loaded_key(s)))
            job.node_id, job.node_seen_at = node.info.node_id, now
            job.cancels_sent.pop(job.node_id, None)
            self._set(job, S.TRAINING_STATE_PLACED)
            self._nodes.queue_command(job.node_id, start_training_command(job))
            self._saved.save(job)
            log.info("training.replaced", job_id=job.id, node_id=job.node_id, lost=sorted(job.lost_nodes),
                     step=job.report.step)
            return
        waited = now - job.unplaced_since
        if waited <= self.unplaced_timeout_s:
            return
        role = enum_word(common_pb2.NodeRole, spec.role)
        where = f"node {spec.node_id} (the spec's node_id)" if spec.node_id else f"serving {role} node"
        error = (f"no {where} to move to for {waited:.0f} s after node(s) {', '.join(sorted(job.lost_nodes))} "
                 f"were lost; the job failed at step {job.report.step}")
        self._set(job, S.TRAINING_STATE_FAILED)
        job.report.error, job.report.error_code = error, grpc.StatusCode.FAILED_PRECONDITION.value[0]
        self._saved.save(job)
        log.warning("training.unplaced_failed", job_id=job.id, error=error)

    def _revoke(self, job: Job, status: common_pb2.NodeStatus) -> None:
        """Cancel ``job`` on a node that still runs it but no longer owns it (once per registration)."""
        node_id, registered = status.info.node_id, status.registered_at.seconds
        if job.cancels_sent.get(node_id) == registered:
            return
        job.cancels_sent[node_id] = registered
        self._nodes.queue_command(node_id, cancel_training_command(job.id))
        log.warning("training.revoked", job_id=job.id, node_id=node_id, owner=job.node_id or "none",
                    state=enum_word(common_pb2.TrainingState, job.state))

    def check_publish(self, name: str, version: str, metadata: dict[str, str], publisher: str) -> None:
        """FAILED_PRECONDITION when node ``publisher`` publishes the result (or a checkpoint) of a job it
        does not own (any more), or of a job that is over; other publishes are not a job's business."""
        if self._shared:
            self._take_in_new()  # a job another replica started
        job = self._jobs.get(metadata.get("lineage.job_id", ""))
        if job is None:
            found = [j for j in self._jobs.values() if name == checkpoint_model(j.id)
                     or (j.spec.output_name, j.spec.output_version) == (name, version)]
            job = next((j for j in found if j.node_id == publisher and not j.done), found[-1] if found else None)
        if job is None:
            return
        if job.done:
            raise FailedPrecondition(f"training job {job.id} is "
                                     f"{enum_word(common_pb2.TrainingState, job.state)}; node {publisher} "
                                     f"may not publish {name} {version} for it")
        if job.node_id != publisher:
            raise FailedPrecondition(f"training job {job.id} is no longer placed on node {publisher} (it is on "
                                     f"{job.node_id or 'no node'}); {name} {version} from {publisher} is refused")

    def _merge(self, job: Job, report: common_pb2.TrainingJobState) -> None:
        job.requeue = False
        if report.state == S.TRAINING_STATE_UNSPECIFIED or report == job.report:
            return
        changed = report.state != job.report.state
        job.report.CopyFrom(report)
        if changed:
            self._saved.save(job)
            log.info("training.state", job_id=job.id, node_id=job.node_id,
                     state=enum_word(common_pb2.TrainingState, report.state), step=report.step,
                     total_steps=report.total_steps, **({"error": report.error} if report.error else {}))

    # --- helpers ------------------------------------------------------------------------------

    def _set(self, job: Job, state: int) -> None:
        job.report.job_id = job.id
        job.report.state = state  # type: ignore[assignment]
        job.report.updated_at.FromNanoseconds(int(self._clock() * 1e9))

    def _check_output_free(self, spec: training_pb2.TrainingJobSpec) -> None:
        out = (spec.output_name, spec.output_version)
        try:
            self._store.describe(*out)
        except NotFound:
            pass
        else:
            raise AlreadyExists(f"spec.output_version: {out[0]} {out[1]} is already in the store; "
                                "choose another version")
        for job in self._jobs.values():
            if not job.done and (job.spec.output_name, job.spec.output_version) == out:
                raise AlreadyExists(f"spec.output_version: job {job.id} is already training {out[0]} {out[1]}")

    def _place(self, spec: training_pb2.TrainingJobSpec) -> common_pb2.NodeStatus:
        role = enum_word(common_pb2.NodeRole, spec.role)
        if spec.node_id:
            try:
                node = self._nodes.node_status(spec.node_id)
            except NotFound as exc:
                raise NotFound(f"spec.node_id: {exc}") from None
            if node.info.role != spec.role:
                raise FailedPrecondition(f"spec.node_id: node {spec.node_id} is not a {role} node")
            return node
        serving = [s for s in self._nodes.statuses(spec.role) if s.health == common_pb2.NODE_HEALTH_SERVING]
        if not serving:
            raise FailedPrecondition(f"spec.role: no serving {role} node is registered to train on")
        return min(serving, key=lambda s: (self._training_on(s.info.node_id), *least_loaded_key(s)))

    def _training_on(self, node_id: str) -> int:
        return sum(1 for job in self._jobs.values() if not job.done and job.node_id == node_id)
