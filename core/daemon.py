"""The core controller daemon: control plane + compute plane in one server."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from cmp.blob_servicer import blob_service
from cmp.deployments import DeploymentBook
from cmp.servicer import ComputePlaneServicer
from cmp.store import ModelStore, default_store_dir
from cmp.training_jobs import JobBook
from cmp.training_servicer import TrainingServicer
from cmp.transfer_io import ZeroCopyChunks
from cmp.upload_budget import UploadBudget
from core.state import CoreStores, open_stores
from cp.placement import WorkflowTable
from cp.policy import PolicyBook
from cp.ran import RanView
from cp.ran_servicer import RanServicer
from cp.registry import NodeRegistry
from cp.revocations import RevocationDistributor
from cp.servicer import ControlPlaneServicer
from cp.sessions import SessionTable, sweep_periodically
from cp.ue_tokens import UeTokenAuthority
from cp.workflow_servicer import WorkflowServicer
from netgpt.access import AuditLog
from netgpt.access_rules import core_rules
from netgpt.config import CoreConfig
from netgpt.errors import StartupError
from netgpt.lease import Lease, LocalLease
from netgpt.metrics import DaemonMetrics, core_metrics
from netgpt.server import NetGptServer, Security, Service, daemon_security, start_server
from netgpt.tasks import cancel_and_wait
from netgpt.tls import daemon_transport
from netgpt.ue_tokens import KEY_FILE, MAX_TTL_S, UeTokenSigner
from netgpt.v1 import compute_plane_pb2_grpc as cmp_grpc
from netgpt.v1 import control_plane_pb2_grpc as cp_grpc
from netgpt.v1 import ran_pb2_grpc
from netgpt.v1 import training_pb2_grpc as tr_grpc
from netgpt.v1 import workflow_pb2_grpc as wf_grpc

log = structlog.get_logger(__name__)
CORE_UPLOAD_STREAMS = 64  # BlobService streams at once; deploys plan about one per blob (the seed)
SINGLETON_LEASE = "core-singleton"  # held by the one replica that sweeps sessions and supervises jobs
LEASE_TTL_HEARTBEATS = 3.0  # lease_ttl_s when unset, in heartbeat intervals


@dataclass
class CoreHandle:
    server: NetGptServer
    registry: NodeRegistry
    sessions: SessionTable
    store: ModelStore
    tokens: UeTokenAuthority
    workflows: WorkflowTable
    policies: PolicyBook
    stores: CoreStores  # workflows, routing policy, sessions, training jobs: SQLite, or PostgreSQL replicas share
    sweeper: asyncio.Task[None] | None = field(default=None, repr=False)
    uploads: UploadBudget = field(default_factory=lambda: UploadBudget(0))  # BlobService egress (bytes_served)
    jobs: JobBook | None = None
    watcher: asyncio.Task[None] | None = field(default=None, repr=False)  # lost nodes and their jobs
    lease: Lease = field(default_factory=lambda: LocalLease(SINGLETON_LEASE))  # sweeping, job supervision

    @property
    def address(self) -> str:
        return self.server.address

    async def stop(self, grace_s: float = 5.0) -> None:
        try:
            await self.server.stop(grace_s)
        finally:
            for task in (self.sweeper, self.watcher):
                if task is not None:
                    await cancel_and_wait(task)
            self.lease.release()  # another replica takes the work over now, not after the lease's ttl
            self.stores.close()


async def start_core(config: CoreConfig) -> CoreHandle:
    if config.session_ttl_s < 0:
        raise StartupError(f"session_ttl_s must be >= 0 (0: sessions never expire); got {config.session_ttl_s:g}")
    if not 0 < config.ue_token_ttl_s <= MAX_TTL_S:
        raise StartupError(f"ue_token_ttl_s must be > 0 and at most {MAX_TTL_S:g}; got {config.ue_token_ttl_s:g}")
    _check_node_loss(config)
    lease_ttl_s = _lease_ttl(config)
    store_dir = Path(config.store_dir).expanduser() if config.store_dir else default_store_dir()
    signer = ue_token_signer(config, store_dir)
    stores = open_stores(config.state_db, store_dir)  # workflows, routing policy, sessions, jobs: restored here
    try:
        registry = NodeRegistry(heartbeat_interval_s=config.heartbeat_interval_s,
                                lost_after_s=config.node_lost_after_s, retention_s=config.node_retention_s,
                                shared=stores.shared_nodes(), journal=stores.command_journal())
        registry.merge_shared()  # a replica joining replicas knows their nodes at once
        sessions = SessionTable(registry, stores.state, ttl_s=config.session_ttl_s, shared=stores.shared)
        workflows = WorkflowTable(registry, state=stores.state, shared=stores.shared)
        policies = PolicyBook(registry, stores.state, shared=stores.shared)
        store = ModelStore(store_dir)
        uploads = UploadBudget(CORE_UPLOAD_STREAMS)
        lease = stores.lease(SINGLETON_LEASE, lease_ttl_s)
        jobs = JobBook(registry, store, stores.jobs, lost_after_s=registry.lost_after_s,
                       unplaced_timeout_s=config.job_unplaced_timeout_s, checkpoint_every=config.train_checkpoint_every,
                       supervising=lease.held, shared=stores.shared, placing=lambda: stores.exclusive("placement"))
        tokens = UeTokenAuthority(signer, registry, config.ue_token_ttl_s, stores.revocations)
        security = _security(config, sessions, store, tokens)
        crls = RevocationDistributor(registry, security.revoked, config.tls_crl)
        deployments = DeploymentBook(registry, store, peer_sources=config.peer_sources,
                                     planning=lambda: stores.exclusive("deploy-planning"))
        server = await _serve(config, registry, sessions, workflows, policies, store, uploads, jobs, tokens,
                              security, crls, deployments)
    except BaseException:
        stores.close()
        raise
    log.info("core.state", state_db=stores.where, workflows=len(workflows),
             routing_policy=policies.for_all_edges is not None, sessions=len(sessions),
             session_ttl_s=config.session_ttl_s)
    if server.metrics is not None:
        server.metrics.add(lambda: core_metrics(registry.statuses, lambda: len(sessions), lambda: uploads.bytes_served))
        server.serve_metrics(config.metrics_listen)
    if lease.renew():  # the first replica up holds it at once
        jobs.take_over()
    sweeper = asyncio.create_task(sweep_periodically(sessions, lease), name="core-session-sweeper")
    watcher = asyncio.create_task(_watch_nodes(registry, jobs, crls, lease), name="core-node-watcher")
    return CoreHandle(server, registry, sessions, store, tokens, workflows, policies, stores, sweeper, uploads,
                      jobs, watcher, lease)


def _check_node_loss(config: CoreConfig) -> None:
    for name in ("node_lost_after_s", "node_retention_s", "job_unplaced_timeout_s", "train_checkpoint_every"):
        if getattr(config, name) < 0:
            raise StartupError(f"{name} must be >= 0; got {getattr(config, name):g}")


def _lease_ttl(config: CoreConfig) -> float:
    """``lease_ttl_s``, or 3 heartbeat intervals when unset; it must outlast the renewal every heartbeat."""
    if config.lease_ttl_s < 0:
        raise StartupError(f"lease_ttl_s must be >= 0 (0: {LEASE_TTL_HEARTBEATS:g} × heartbeat_interval_s); "
                           f"got {config.lease_ttl_s:g}")
    if 0 < config.lease_ttl_s <= config.heartbeat_interval_s:
        raise StartupError(f"lease_ttl_s ({config.lease_ttl_s:g}) must be longer than heartbeat_interval_s "
                           f"({config.heartbeat_interval_s:g}): the lease is renewed once per heartbeat interval")
    return config.lease_ttl_s or LEASE_TTL_HEARTBEATS * config.heartbeat_interval_s


async def _watch_nodes(registry: NodeRegistry, jobs: JobBook, crls: RevocationDistributor | None = None,
                       lease: Lease | None = None) -> None:
    """Every heartbeat interval: mark silent nodes lost, drop those gone for good; renew ``lease`` and, while
    this replica holds it, move the jobs of lost nodes; take a changed certificate revocation list in and hand
    it to the nodes."""
    lease = lease if lease is not None else LocalLease(SINGLETON_LEASE)
    held = lease.held()
    while True:
        await asyncio.sleep(registry.heartbeat_interval_s)
        try:
            held, was_held = lease.renew(), held  # first: a failing sweep must not cost the lease
            registry.merge_shared()  # replicas: the nodes that beat to the others
            registry.sweep()
            if held and not was_held:
                jobs.take_over()  # another replica supervised them until now
            if held:
                jobs.supervise()
        except Exception:  # a full disk must not end the watcher; the next round retries
            log.exception("core.node_watch_failed")
        if crls is not None:
            crls.poll()


def ue_token_signer(config: CoreConfig, store_dir: Path) -> UeTokenSigner:
    """The key UE tokens are signed with: ``ue_token_key`` as given, else one made once in the store dir."""
    if config.ue_token_key:
        return UeTokenSigner.from_file(Path(config.ue_token_key).expanduser())
    return UeTokenSigner.from_file(store_dir / KEY_FILE, create=True)


async def _serve(config: CoreConfig, registry: NodeRegistry, sessions: SessionTable, workflows: WorkflowTable,
                 policies: PolicyBook, store: ModelStore, uploads: UploadBudget, jobs: JobBook,
                 tokens: UeTokenAuthority, security: Security, crls: RevocationDistributor,
                 deployments: DeploymentBook) -> NetGptServer:
    return await start_server(config.listen, [
        Service("netgpt.v1.ControlPlaneService", ControlPlaneServicer(registry, sessions, policies, tokens, crls),
                cp_grpc.add_ControlPlaneServiceServicer_to_server),
        Service("netgpt.v1.RanService",  # mobility, load, UE tokens
                RanServicer(RanView(registry, sessions, saturated_prb=config.cell_saturated_prb), tokens),
                ran_pb2_grpc.add_RanServiceServicer_to_server),
        Service("netgpt.v1.ComputePlaneService",
                ComputePlaneServicer(registry, store, deployments,
                                     node_publish_check=jobs.check_publish),  # no results of jobs a node lost
                cmp_grpc.add_ComputePlaneServiceServicer_to_server),
        blob_service(store, uploads),  # the origin of node-to-node distribution
        Service("netgpt.v1.WorkflowService", WorkflowServicer(workflows),
                wf_grpc.add_WorkflowServiceServicer_to_server),
        Service("netgpt.v1.TrainingService", TrainingServicer(jobs), tr_grpc.add_TrainingServiceServicer_to_server),
    ], [ZeroCopyChunks()], security=security,
        metrics=DaemonMetrics() if config.metrics_listen else None)


def _security(config: CoreConfig, sessions: SessionTable, store: ModelStore, tokens: UeTokenAuthority) -> Security:
    transport = daemon_transport(config, "core", "core")
    audit = Path(config.audit_log).expanduser() if config.audit_log else store.root / "audit.jsonl"
    return daemon_security(config, transport, core_rules(lambda request: sessions.get(request.session_id).ue_id),
                           AuditLog(audit), tokens.verifier)
