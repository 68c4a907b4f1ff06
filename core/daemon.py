"""The core controller daemon: control plane + compute plane in one server."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cmp.store import ModelStore, default_store_dir
from cmp.deploy_servicer import ModelLifecycleServicer
from cp.placement import WorkflowTable
from cp.policy import PolicyBook
from cp.registry import NodeRegistry
from cp.servicer import ControlPlaneServicer
from cp.sessions import SessionTable
from cp.workflow_servicer import WorkflowServicer
from netgpt.config import CoreConfig
from netgpt.server import NetGptServer, Service, start_server
from netgpt.v1 import compute_plane_pb2_grpc as cmp_grpc
from netgpt.v1 import control_plane_pb2_grpc as cp_grpc
from netgpt.v1 import workflow_pb2_grpc as wf_grpc


@dataclass
class CoreHandle:
    server: NetGptServer
    registry: NodeRegistry
    sessions: SessionTable
    store: ModelStore
    workflows: WorkflowTable

    @property
    def address(self) -> str:
        return self.server.address

    async def stop(self, grace_s: float = 5.0) -> None:
        await self.server.stop(grace_s)


async def start_core(config: CoreConfig) -> CoreHandle:
    registry = NodeRegistry(heartbeat_interval_s=config.heartbeat_interval_s)
    sessions = SessionTable(registry)
    workflows = WorkflowTable(registry)
    store = ModelStore(Path(config.store_dir).expanduser() if config.store_dir else default_store_dir())
    server = await start_server(config.listen, [
        Service("netgpt.v1.ControlPlaneService", ControlPlaneServicer(registry, sessions, PolicyBook(registry)),
                cp_grpc.add_ControlPlaneServiceServicer_to_server),
        Service("netgpt.v1.ComputePlaneService", ModelLifecycleServicer(registry, store),
                cmp_grpc.add_ComputePlaneServiceServicer_to_server),
        Service("netgpt.v1.WorkflowService", WorkflowServicer(workflows),
                wf_grpc.add_WorkflowServiceServicer_to_server),
    ])
    return CoreHandle(server, registry, sessions, store, workflows)
