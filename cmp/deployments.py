"""The core's side of deployments: check a deploy against the store and the target nodes, queue
commands on the nodes' heartbeat streams, and merge what the nodes report into one status.

The nodes do the work and own the truth (they report every command's phase in their
heartbeats, see ``cmp.deployer``); the core only remembers the commands it queued
that no node has reported yet, so status shows them as PENDING. Like the registry this
is memory only: after a core restart the nodes' own reports rebuild it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

from cmp.commands import deploy_command, pending_state, rollback_command
from cmp.convert import manifest_ref
from cmp.distribution import MAX_SOURCES, DeployTree, Peer
from cmp.manifest import Manifest
from cmp.nodes import NodeDirectory
from cmp.records import NodeDeployments
from cmp.store import ModelStore
from netgpt.errors import FailedPrecondition, InvalidArgument
from netgpt.node_status import models_served, serving_ref
from netgpt.v1 import common_pb2
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.words import enum_word

KIND_ROLE = {"onnx_edge": common_pb2.NODE_ROLE_EDGE, "lora_adapter": common_pb2.NODE_ROLE_CLOUD,
             "router": common_pb2.NODE_ROLE_EDGE}
MAX_PENDING = 16  # per node: commands a node never picks up must not pile up forever


def role_word(role: int) -> str:
    return enum_word(common_pb2.NodeRole, role)


def a_role(role: int) -> str:
    word = role_word(role)
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def check_fits(status: common_pb2.NodeStatus, manifest: Manifest) -> None:
    """FAILED_PRECONDITION unless the node can run this version (right role; an adapter for its base; a router
    only where the edge routes with one: an edge that serves none routes by rules and would never read it)."""
    node, role = status.info.node_id, status.info.role
    if role != KIND_ROLE[manifest.kind]:
        raise FailedPrecondition(f"node {node} is {a_role(role)} node; {manifest.kind} versions run on "
                                 f"{role_word(KIND_ROLE[manifest.kind])} nodes")
    if manifest.kind == "router" and not any(m.kind == common_pb2.MODEL_KIND_ROUTER for m in models_served(status)):
        raise FailedPrecondition(f"node {node} routes by rules and serves no router; start it with "
                                 "router = learned or shadow to deploy router versions to it")
    if manifest.kind == "lora_adapter":
        serving = serving_ref(status)
        base = serving.base_model or serving.name
        if manifest.base_model != base:
            raise FailedPrecondition(f"adapter {manifest.name} {manifest.version} applies to base model "
                                     f"{manifest.base_model!r}; node {node} serves base model {base!r}")


def _peer(status: common_pb2.NodeStatus) -> Peer:
    return Peer(status.info.node_id, status.info.address, status.info.region)


class DeploymentBook:
    def __init__(self, nodes: NodeDirectory, store: ModelStore, clock: Callable[[], float] = time.time,
                 peer_sources: int = MAX_SOURCES,
                 planning: Callable[[], AbstractContextManager[object]] = nullcontext) -> None:
        """``planning``: the lock core replicas plan deploys under, one replica at a time."""
        self._nodes = nodes
        self._planning = planning
        self._store = store
        self._peer_sources = peer_sources  # peers listed per node; 0: every node fetches from the core only
        self._clock = clock
        self._pending: dict[str, list[common_pb2.DeploymentState]] = {}  # node id -> oldest first

    def deploy(self, name: str, version: str, node_ids: list[str], role: int) -> list[NodeDeployments]:
        """Queue the version for every target, or for none if any target cannot run it."""
        manifest = self._store.describe(name, version)
        if manifest.kind not in KIND_ROLE:
            raise FailedPrecondition(f"{manifest.name} {manifest.version} is a {manifest.kind}; only "
                                     f"{', '.join(KIND_ROLE)} versions deploy at run time (nodes load "
                                     "checkpoints at start)")
        targets = self._targets(node_ids, role or KIND_ROLE[manifest.kind])
        for status in targets:
            check_fits(status, manifest)
        ref = manifest_ref(manifest)
        pieces = self._store.pieces(manifest.sha256)  # hashed once per blob (the servicer warms it off the loop)
        with self._planning():
            tree = DeployTree(self._holders(manifest.sha256), max_sources=self._sources(manifest))
            for status in targets:
                plan = tree.plan(_peer(status), manifest.sha256, pieces)
                self._queue(status.info.node_id, deploy_command(uuid.uuid4().hex, ref, plan))
        return [self._node(s) for s in targets]

    def _sources(self, manifest: Manifest) -> int:
        """Peers listed per node: none for a router (a few KB, kept on a shelf of the edge's router slot
        that it does not serve to peers: every edge fetches it from the core)."""
        return 0 if manifest.kind == "router" else self._peer_sources

    def _holders(self, sha256: str) -> list[Peer]:
        """Nodes whose last heartbeat says they hold this blob verified, healthy ones only."""
        return [_peer(s) for s in self._nodes.statuses()
                if sha256 in s.load.blobs and s.health == common_pb2.NODE_HEALTH_SERVING]

    def rollback(self, node_id: str) -> NodeDeployments:
        status = self._nodes.node_status(node_id)
        self._queue(node_id, rollback_command(uuid.uuid4().hex))
        return self._node(status)

    def status(self, node_id: str = "") -> list[NodeDeployments]:
        statuses = [self._nodes.node_status(node_id)] if node_id else self._nodes.statuses()
        return [self._node(s) for s in statuses]

    def _targets(self, node_ids: list[str], role: int) -> list[common_pb2.NodeStatus]:
        if role not in (common_pb2.NODE_ROLE_EDGE, common_pb2.NODE_ROLE_CLOUD):
            raise InvalidArgument("role must be NODE_ROLE_EDGE or NODE_ROLE_CLOUD (or unset)")
        if node_ids:
            return [self._nodes.node_status(n) for n in dict.fromkeys(node_ids)]
        targets = self._nodes.statuses(role)
        if not targets:
            raise FailedPrecondition(f"no {role_word(role)} nodes are registered to deploy to")
        return targets

    def _queue(self, node_id: str, command: cp_pb2.NodeCommand) -> None:
        self._nodes.queue_command(node_id, command)
        self._pending.setdefault(node_id, []).append(pending_state(command, self._clock()))
        del self._pending[node_id][:-MAX_PENDING]

    def _node(self, status: common_pb2.NodeStatus) -> NodeDeployments:
        """Pending commands (newest first) the node has not reported yet, then the node's own reports."""
        node_id = status.info.node_id
        reported = list(status.load.deployments)
        known = {d.command_id for d in reported}
        pending = [d for d in self._pending.get(node_id, []) if d.command_id not in known]
        self._pending[node_id] = pending
        return NodeDeployments(status, [*reversed(pending), *reported])
