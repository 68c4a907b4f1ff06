"""What the compute plane needs to know about nodes, as a narrow protocol.

The core's control-plane registry (``cp.registry.NodeRegistry``) satisfies it; the compute
plane never imports that class, so the planes stay independent (DESIGN.md, Layering) and
tests can hand in a small in-memory directory instead.
"""

from __future__ import annotations

from typing import Protocol

from netgpt.node_status import models_served
from netgpt.v1 import common_pb2
from netgpt.v1 import control_plane_pb2 as cp_pb2

ModelKey = tuple[str, str, str, common_pb2.ModelKind]  # (name, version, sha256, kind): one exact model


class NodeDirectory(Protocol):
    def statuses(self, role: int = common_pb2.NODE_ROLE_UNSPECIFIED) -> list[common_pb2.NodeStatus]:
        """Every registered node of ``role`` (all roles when UNSPECIFIED), ordered by node id."""
        ...

    def node_status(self, node_id: str) -> common_pb2.NodeStatus:
        """One node's status; raises ``netgpt.errors.NotFound`` when it is not registered."""
        ...

    def queue_command(self, node_id: str, command: cp_pb2.NodeCommand) -> None:
        """Deliver ``command`` with the node's next heartbeat reply."""
        ...


def nodes_by_model(nodes: NodeDirectory, role: int) -> dict[ModelKey, list[str]]:
    """Node ids grouped by the exact model they serve, in model order."""
    by_model: dict[ModelKey, list[str]] = {}
    for status in nodes.statuses(role):
        for model in models_served(status):
            key = (model.name, model.version, model.sha256, model.kind)
            by_model.setdefault(key, []).append(status.info.node_id)
    return dict(sorted(by_model.items()))
