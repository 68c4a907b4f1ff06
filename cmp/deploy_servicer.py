"""ComputePlaneService in full: the model store's RPCs plus deploy, rollback and deployment status.
Thin: decode, call the DeploymentBook, encode."""

from __future__ import annotations

import grpc
import structlog

from cmp.deployments import DeploymentBook
from cmp.store import ModelStore
from cmp.store_servicer import ModelStoreServicer
from cp.registry import NodeRegistry
from netgpt.v1 import compute_plane_pb2 as cmp_pb2

log = structlog.get_logger(__name__)


class ModelLifecycleServicer(ModelStoreServicer):
    def __init__(self, registry: NodeRegistry, store: ModelStore) -> None:
        super().__init__(registry, store)
        self.deployments = DeploymentBook(registry, store)

    async def DeployModel(self, request: cmp_pb2.DeployModelRequest,
                          context: grpc.aio.ServicerContext) -> cmp_pb2.DeployModelResponse:
        nodes = self.deployments.deploy(request.name, request.version, list(request.node_ids), request.role)
        log.info("cmp.deploy.queued", model=request.name, version=request.version, nodes=[n.node_id for n in nodes])
        return cmp_pb2.DeployModelResponse(nodes=nodes)

    async def RollbackModel(self, request: cmp_pb2.RollbackModelRequest,
                            context: grpc.aio.ServicerContext) -> cmp_pb2.RollbackModelResponse:
        node = self.deployments.rollback(request.node_id)
        log.info("cmp.rollback.queued", node_id=request.node_id)
        return cmp_pb2.RollbackModelResponse(node=node)

    async def GetDeploymentStatus(self, request: cmp_pb2.GetDeploymentStatusRequest,
                                  context: grpc.aio.ServicerContext) -> cmp_pb2.GetDeploymentStatusResponse:
        return cmp_pb2.GetDeploymentStatusResponse(nodes=self.deployments.status(request.node_id))
