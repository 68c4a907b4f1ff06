"""The edges' routing policy as set through the control plane, delivered by heartbeat commands."""

from __future__ import annotations

from cp.registry import NodeRegistry
from netgpt.errors import InvalidArgument
from netgpt.v1 import common_pb2
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import user_plane_pb2 as up_pb2

MAX_PROBE_TOKENS = 64


def check_policy(policy: cp_pb2.RoutingPolicy) -> None:
    if policy.HasField("confidence_threshold") and policy.confidence_threshold > 0:
        raise InvalidArgument("confidence_threshold is a mean log-probability and must be <= 0")
    if policy.confidence_probe_tokens > MAX_PROBE_TOKENS:
        raise InvalidArgument(f"confidence_probe_tokens must be <= {MAX_PROBE_TOKENS}")
    unknown = [t for t in policy.edge_tasks if t not in up_pb2.TaskClass.values() or t == 0]
    if unknown:
        raise InvalidArgument(f"edge_tasks holds unknown task classes {unknown}")


class PolicyBook:
    def __init__(self, registry: NodeRegistry) -> None:
        self._registry = registry
        self.for_all_edges: cp_pb2.RoutingPolicy | None = None

    def set(self, policy: cp_pb2.RoutingPolicy, node_ids: list[str]) -> list[str]:
        """Queue ``policy`` for the given edges (or all, now and later); returns the edges reached now."""
        check_policy(policy)
        if node_ids:
            for node_id in node_ids:
                if self._registry.get(node_id).info.role != common_pb2.NODE_ROLE_EDGE:
                    raise InvalidArgument(f"node {node_id!r} is not an edge node")
            targets = list(node_ids)
        else:
            self.for_all_edges = policy
            targets = [s.info.node_id for s in self._registry.statuses(common_pb2.NODE_ROLE_EDGE)]
        for node_id in targets:
            self._push(node_id, policy)
        return targets

    def on_register(self, node_id: str) -> None:
        """A (re-)registered edge gets the policy set for all edges."""
        if self.for_all_edges is not None and self._registry.get(node_id).info.role == common_pb2.NODE_ROLE_EDGE:
            self._push(node_id, self.for_all_edges)

    def _push(self, node_id: str, policy: cp_pb2.RoutingPolicy) -> None:
        self._registry.queue_command(node_id, cp_pb2.NodeCommand(routing_policy=policy))
