"""ComputePlaneService: one servicer composing the model store, the deployment book and the node
directory. Thin: decode the request, call the domain, encode the reply (``cmp.convert``);
errors are domain exceptions that the server's interceptor maps to status codes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import grpc
import structlog

from cmp.convert import (
    manifest_to_proto,
    node_deployments_to_proto,
    served_models_to_proto,
)
from cmp.deployments import DeploymentBook
from cmp.manifest import Manifest
from cmp.nodes import NodeDirectory, nodes_by_model
from cmp.store import ModelStore
from cmp.transfer_io import MANIFEST_ACCEPTED
from cmp.transfer_server import fetch_responses, receive_publish
from netgpt.access import NODES, current_principal
from netgpt.v1 import compute_plane_pb2 as cmp_pb2
from netgpt.v1 import compute_plane_pb2_grpc as cmp_grpc

log = structlog.get_logger(__name__)


# (name, version, metadata, publishing node id) -> None, or a domain error that refuses the publish
NodePublishCheck = Callable[[str, str, dict[str, str], str], None]


class ComputePlaneServicer(cmp_grpc.ComputePlaneServiceServicer):
    def __init__(self, nodes: NodeDirectory, store: ModelStore, deployments: DeploymentBook | None = None,
                 node_publish_check: NodePublishCheck | None = None) -> None:
        """``node_publish_check`` vets what a *node* publishes (the training jobs' ``check_publish``)."""
        self.nodes = nodes
        self.store = store
        self.deployments = deployments if deployments is not None else DeploymentBook(nodes, store)
        self.node_publish_check = node_publish_check

    def _admit(self, claim: Manifest) -> None:
        caller = current_principal()
        if self.node_publish_check is not None and caller.role in NODES:
            self.node_publish_check(claim.name, claim.version, dict(claim.metadata), caller.name)

    # --- which models are served where (from registration and heartbeats) ---------------

    async def ListModels(self, request: cmp_pb2.ListModelsRequest,
                         context: grpc.aio.ServicerContext) -> cmp_pb2.ListModelsResponse:
        return cmp_pb2.ListModelsResponse(models=served_models_to_proto(nodes_by_model(self.nodes, request.role)))

    # --- the model store ------------------------------------------------------------------

    async def PublishModel(self, request_iterator: AsyncIterator[cmp_pb2.PublishModelRequest],
                           context: grpc.aio.ServicerContext) -> cmp_pb2.PublishModelResponse:
        return await receive_publish(self.store, request_iterator,
                                     accepted=lambda: context.send_initial_metadata(MANIFEST_ACCEPTED),
                                     admit=self._admit)

    async def ListModelVersions(self, request: cmp_pb2.ListModelVersionsRequest,
                                context: grpc.aio.ServicerContext) -> cmp_pb2.ListModelVersionsResponse:
        manifests = [manifest_to_proto(m) for m in self.store.versions(request.name)]
        return cmp_pb2.ListModelVersionsResponse(manifests=manifests)

    async def DescribeModelVersion(self, request: cmp_pb2.DescribeModelVersionRequest,
                                   context: grpc.aio.ServicerContext) -> cmp_pb2.DescribeModelVersionResponse:
        manifest = self.store.describe(request.name, request.version)
        return cmp_pb2.DescribeModelVersionResponse(manifest=manifest_to_proto(manifest))

    async def FetchModel(self, request: cmp_pb2.FetchModelRequest,
                         context: grpc.aio.ServicerContext) -> AsyncIterator[cmp_pb2.FetchModelResponse]:
        async for response in fetch_responses(self.store, request):
            yield response

    # --- deployments ----------------------------------------------------------------------

    async def DeployModel(self, request: cmp_pb2.DeployModelRequest,
                          context: grpc.aio.ServicerContext) -> cmp_pb2.DeployModelResponse:
        manifest = self.store.describe(request.name, request.version)
        await asyncio.to_thread(self.store.pieces, manifest.sha256)  # one read of a new blob, off the event loop
        nodes = self.deployments.deploy(request.name, request.version, list(request.node_ids), request.role)
        log.info("cmp.deploy.queued", model=request.name, version=request.version,
                 nodes=[n.status.info.node_id for n in nodes])
        return cmp_pb2.DeployModelResponse(nodes=[node_deployments_to_proto(n) for n in nodes])

    async def RollbackModel(self, request: cmp_pb2.RollbackModelRequest,
                            context: grpc.aio.ServicerContext) -> cmp_pb2.RollbackModelResponse:
        node = self.deployments.rollback(request.node_id)
        log.info("cmp.rollback.queued", node_id=request.node_id)
        return cmp_pb2.RollbackModelResponse(node=node_deployments_to_proto(node))

    async def GetDeploymentStatus(self, request: cmp_pb2.GetDeploymentStatusRequest,
                                  context: grpc.aio.ServicerContext) -> cmp_pb2.GetDeploymentStatusResponse:
        nodes = self.deployments.status(request.node_id)
        return cmp_pb2.GetDeploymentStatusResponse(nodes=[node_deployments_to_proto(n) for n in nodes])
