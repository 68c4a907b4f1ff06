"""ControlPlaneService: thin gRPC layer over the node registry and the session table."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import structlog

from cp.policy import PolicyBook
from cp.registry import NodeRegistry
from cp.revocations import RevocationDistributor
from cp.sessions import SessionTable
from cp.ue_tokens import UeTokenAuthority
from netgpt.errors import InvalidArgument
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import control_plane_pb2_grpc as cp_grpc

log = structlog.get_logger(__name__)


class ControlPlaneServicer(cp_grpc.ControlPlaneServiceServicer):
    def __init__(self, registry: NodeRegistry, sessions: SessionTable, policies: PolicyBook,
                 tokens: UeTokenAuthority | None = None, revocations: RevocationDistributor | None = None) -> None:
        self.registry = registry
        self.sessions = sessions
        self.policies = policies
        self.tokens = tokens
        self.revocations = revocations

    async def RegisterNode(self, request: cp_pb2.RegisterNodeRequest,
                           context: grpc.aio.ServicerContext) -> cp_pb2.RegisterNodeResponse:
        node_id = self.registry.register(request.node)
        self.policies.on_register(node_id)
        if self.tokens is not None:
            self.tokens.on_register(node_id)  # the keys UE tokens are checked with, and the revocations
        if self.revocations is not None:
            self.revocations.on_register(node_id)  # the CA's certificate revocation list
        log.info("node.registered", node_id=node_id, role=request.node.role, address=request.node.address,
                 cells=list(request.node.cell_ids))
        interval_ms = int(self.registry.heartbeat_interval_s * 1000)
        return cp_pb2.RegisterNodeResponse(node_id=node_id, heartbeat_interval_ms=interval_ms)

    async def Heartbeat(self, request_iterator: AsyncIterator[cp_pb2.HeartbeatRequest],
                        context: grpc.aio.ServicerContext) -> AsyncIterator[cp_pb2.HeartbeatResponse]:
        async for beat in request_iterator:
            if not beat.node_id:
                raise InvalidArgument("heartbeat.node_id is required")
            commands = self.registry.heartbeat(beat.node_id, beat.load)
            for command in commands:
                if not command.HasField("peers_update"):  # peers go with every edge heartbeat: not news
                    log.info("node.command", node_id=beat.node_id, command_id=command.command_id,
                             kind=command.WhichOneof("command"))
            yield cp_pb2.HeartbeatResponse(commands=commands)

    async def EstablishSession(self, request: cp_pb2.EstablishSessionRequest,
                               context: grpc.aio.ServicerContext) -> cp_pb2.EstablishSessionResponse:
        session = await self.sessions.establish_async(request)
        log.info("session.established", session_id=session.session_id, ai_flow_id=session.ai_flow_id,
                 ue_id=session.ue_id, cell_id=session.cell_id, edge=session.serving_edge.node_id,
                 cloud=session.serving_cloud.node_id)
        return cp_pb2.EstablishSessionResponse(session=session)

    async def GetSession(self, request: cp_pb2.GetSessionRequest,
                         context: grpc.aio.ServicerContext) -> cp_pb2.GetSessionResponse:
        return cp_pb2.GetSessionResponse(session=await self.sessions.get_async(request.session_id))

    async def ReleaseSession(self, request: cp_pb2.ReleaseSessionRequest,
                             context: grpc.aio.ServicerContext) -> cp_pb2.ReleaseSessionResponse:
        await self.sessions.release_async(request.session_id)
        log.info("session.released", session_id=request.session_id)
        return cp_pb2.ReleaseSessionResponse()

    async def ListNodes(self, request: cp_pb2.ListNodesRequest,
                        context: grpc.aio.ServicerContext) -> cp_pb2.ListNodesResponse:
        return cp_pb2.ListNodesResponse(nodes=self.registry.statuses(request.role))

    async def SetRoutingPolicy(self, request: cp_pb2.SetRoutingPolicyRequest,
                               context: grpc.aio.ServicerContext) -> cp_pb2.SetRoutingPolicyResponse:
        fields = list(request.update_mask.paths)
        targets = self.policies.set(request.policy, list(request.node_ids), fields)
        log.info("policy.set", edges=targets, for_all=not request.node_ids, fields=fields or "all")
        return cp_pb2.SetRoutingPolicyResponse(node_ids=targets)

    async def GetRoutingPolicy(self, request: cp_pb2.GetRoutingPolicyRequest,
                               context: grpc.aio.ServicerContext) -> cp_pb2.GetRoutingPolicyResponse:
        return cp_pb2.GetRoutingPolicyResponse(policy=self.policies.for_all_edges)
