"""The core's view of the topology: registered nodes, their load and liveness.

In memory on purpose: nodes re-register on their own when the core restarts (see
``cp.agent``), so the registry rebuilds itself within one heartbeat interval.

A node's health follows its silence: SERVING, then STALE after ``stale_after_heartbeats``
intervals (not picked), then LOST after ``lost_after_s`` (its training jobs move elsewhere, it
is no cloud peer of the edges any more); :meth:`NodeRegistry.sweep` logs those losses and drops
nodes silent for ``retention_s``. A node that heartbeats again is SERVING again.

Core replicas (``shared``: a :class:`cp.node_store.NodeStore` in their common database) also write
each registration and beat there and queue commands there; :meth:`NodeRegistry.merge_shared`, run
every interval, takes in the nodes that beat to other replicas, so every replica places, routes and
reports on the whole fleet, and a command reaches its node whichever replica it beats to.

Edges learn the clouds from a ``PeersUpdate`` in their heartbeat replies: the clouds' statuses as
far as an edge routes on them (identity, health, queue, active requests, first-token time, models;
not counters, deployments, jobs or blobs). It is built once per change and handed to an edge only
when it differs from what that edge last got, so an edge's view is still never older than one of
its heartbeat intervals plus the cloud's own report, while unchanged clouds cost an edge beat
nothing (``bench.fleet_sim``: before, every edge beat re-built and re-sent every cloud's full
status, and every registration re-queued it for every edge).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from cp.node_store import NodeStore, SharedNode
from netgpt.errors import InvalidArgument, NotFound
from netgpt.node_status import least_loaded_key
from netgpt.v1 import common_pb2, control_plane_pb2
from netgpt.words import enum_word

log = structlog.get_logger(__name__)

SERVING_ROLES = (common_pb2.NODE_ROLE_EDGE, common_pb2.NODE_ROLE_CLOUD)


@dataclass
class NodeEntry:
    info: common_pb2.NodeInfo
    registered_at: float
    last_heartbeat: float
    load: common_pb2.NodeLoad = field(default_factory=common_pb2.NodeLoad)
    pending: list[control_plane_pb2.NodeCommand] = field(default_factory=list)
    lost: bool = False  # logged as lost by sweep() (and not heard from since)
    peers_version: int = -1  # an edge: the version of the clouds' statuses it was last handed
    remote: bool = False  # known from the shared registry: the node beats to another replica


class NodeRegistry:
    """Nodes by id; a node missing ``stale_after_s`` of heartbeats is STALE and not picked, one silent for
    ``lost_after_s`` is LOST (0: never), one silent for ``retention_s`` is dropped by :meth:`sweep` (0: kept)."""

    def __init__(self, heartbeat_interval_s: float = 2.0, stale_after_heartbeats: int = 3,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 lost_after_s: float = 0.0, retention_s: float = 0.0, shared: NodeStore | None = None,
                 journal: NodeStore | None = None) -> None:
        self.heartbeat_interval_s = heartbeat_interval_s
        self.stale_after_s = heartbeat_interval_s * stale_after_heartbeats
        self.lost_after_s = max(lost_after_s, self.stale_after_s) if lost_after_s > 0 else 0.0
        self.retention_s = max(retention_s, self.lost_after_s) if retention_s > 0 else 0.0
        self._clock = clock
        self._wall = wall
        self._nodes: dict[str, NodeEntry] = {}
        self._clouds: dict[str, NodeEntry] = {}  # the cloud nodes among them
        self._by_cell: dict[str, dict[str, NodeEntry]] = {}  # cell id -> the edges that serve it
        self._wall_offset = wall() - clock()
        self._clouds_changed = 0  # counts changes of what edges route on: a cloud came, went or changed its load
        self._peers_key: tuple[int, tuple[int, ...]] | None = None  # what the current PeersUpdate was built from
        self._peers_version = -1
        self._peers_command = control_plane_pb2.NodeCommand()
        self._shared = shared
        self._journal = journal if shared is None else None  # one core's queues, kept across its restarts
        self._merged_until = 0.0  # wall time of the last merge_shared
        # cells whose radio is saturated (``cp.ran.RanView`` installs its own): placement avoids their edges
        self.saturated_cells: Callable[[], frozenset[str]] = frozenset

    def register(self, info: common_pb2.NodeInfo) -> str:
        """Add or replace a node (ids are kept across re-registration); returns its id."""
        if info.role not in SERVING_ROLES:
            raise InvalidArgument("node.role must be NODE_ROLE_EDGE or NODE_ROLE_CLOUD")
        if not info.address:
            raise InvalidArgument("node.address is required (host:port where the node serves)")
        if info.role == common_pb2.NODE_ROLE_EDGE and not info.cell_ids:
            raise InvalidArgument("an edge node must serve at least one cell (node.cell_ids)")
        stored = common_pb2.NodeInfo()
        stored.CopyFrom(info)
        if not stored.node_id:
            stored.node_id = f"{enum_word(common_pb2.NodeRole, stored.role)}-{uuid.uuid4().hex[:8]}"
        now = self._clock()
        previous = self._nodes.get(stored.node_id)
        entry = NodeEntry(info=stored, registered_at=now, last_heartbeat=now)
        if previous is not None:
            entry.pending = previous.pending
            self._unindex(previous)
        elif self._journal is not None:
            entry.pending = self._journal.pending(stored.node_id)  # queued before this core was restarted
        self._index(entry, previous)
        if self._shared is not None:
            self._shared.put_node(stored, self._wall())
        return stored.node_id

    def _index(self, entry: NodeEntry, previous: NodeEntry | None) -> None:
        stored = entry.info
        self._nodes[stored.node_id] = entry
        if stored.role == common_pb2.NODE_ROLE_CLOUD:
            self._clouds[stored.node_id] = entry
        else:
            for cell_id in stored.cell_ids:
                self._by_cell.setdefault(cell_id, {})[stored.node_id] = entry
        if common_pb2.NODE_ROLE_CLOUD in (stored.role, previous.info.role if previous else None):
            self.broadcast_peers()  # the clouds edges know of changed (an edge coming changes nothing for others)

    def _unindex(self, entry: NodeEntry) -> None:
        node_id = entry.info.node_id
        self._clouds.pop(node_id, None)
        for cell_id in entry.info.cell_ids:
            edges = self._by_cell.get(cell_id, {})
            edges.pop(node_id, None)
            if not edges:
                self._by_cell.pop(cell_id, None)

    def heartbeat(self, node_id: str, load: common_pb2.NodeLoad) -> list[control_plane_pb2.NodeCommand]:
        """Record liveness and load; hand back (and clear) the commands queued for the node."""
        entry = self._nodes.get(node_id)
        if entry is None:
            raise NotFound(f"node {node_id!r} is not registered; register again")
        self._heard(entry, self._clock(), load)
        entry.remote = False
        if entry.info.role == common_pb2.NODE_ROLE_EDGE:
            self._refresh_peers(entry)  # the clouds' load as of their last beat, never older
        commands, entry.pending = entry.pending, []
        journalled = [c.command_id for c in commands if not c.HasField("peers_update")]  # peers: built per beat
        if self._journal is not None and journalled:
            self._journal.taken(journalled)
        if self._shared is not None:
            commands += self._shared.beat(node_id, load, self._wall())
        return commands

    def _heard(self, entry: NodeEntry, at: float, load: common_pb2.NodeLoad) -> None:
        entry.last_heartbeat = at
        if entry.lost:
            entry.lost = False
            log.info("cp.node_returned", node_id=entry.info.node_id)
        if entry.info.role == common_pb2.NODE_ROLE_CLOUD and _routing_load(entry.load) != _routing_load(load):
            self._clouds_changed += 1
        entry.load.CopyFrom(load)

    def merge_shared(self) -> int:
        """Take in what other replicas heard since the last merge (a node that beats here is fresher
        here and is left alone); returns how many nodes were new or fresher. One core: nothing to do."""
        if self._shared is None:
            return 0
        wall, clock = self._wall(), self._clock()
        since = self._merged_until - self.heartbeat_interval_s  # overlap: beats committed during the last read
        self._merged_until = wall
        taken = 0
        for node in self._shared.seen_since(since):
            heard_at = clock - max(0.0, wall - node.last_seen)
            entry = self._nodes.get(node.info.node_id)
            if entry is not None and entry.last_heartbeat >= heard_at:
                continue
            if entry is None or entry.info != node.info:
                entry = self._adopt(node, entry, clock - max(0.0, wall - node.registered_at))
            self._heard(entry, heard_at, node.load)
            entry.remote = True  # it beats to another replica now
            taken += 1
        return taken

    def _adopt(self, node: SharedNode, previous: NodeEntry | None, registered_at: float) -> NodeEntry:
        """A node another replica registered (or re-registered with other info)."""
        if previous is not None:
            self._unindex(previous)
        entry = NodeEntry(info=node.info, registered_at=registered_at, last_heartbeat=registered_at, remote=True)
        self._index(entry, previous)
        log.info("cp.node_seen_at_replica", node_id=node.info.node_id)
        return entry

    def get(self, node_id: str) -> NodeEntry:
        entry = self._nodes.get(node_id)
        if entry is None and self._shared is not None:
            self.merge_shared()  # it may have registered at another replica since the last merge
            entry = self._nodes.get(node_id)
        if entry is None:
            raise NotFound(f"node {node_id!r} is not registered")
        return entry

    def node_status(self, node_id: str) -> common_pb2.NodeStatus:
        """The status of one node; NotFound when it is not registered."""
        return self.status(self.get(node_id))

    def queue_command(self, node_id: str, command: control_plane_pb2.NodeCommand) -> None:
        """Deliver ``command`` with the node's next heartbeat reply (through any replica, when shared)."""
        self._queue(self.get(node_id), command, replace_kind=False)

    def queue_replacing(self, node_id: str, command: control_plane_pb2.NodeCommand) -> None:
        """Queue ``command`` in place of any undelivered command of its kind: it carries the whole state."""
        self._queue(self.get(node_id), command, replace_kind=True)

    def _queue(self, entry: NodeEntry, command: control_plane_pb2.NodeCommand, replace_kind: bool,
               local: bool = False) -> None:
        if not command.command_id:
            command.command_id = uuid.uuid4().hex
        if self._shared is not None and not local:
            self._shared.queue(entry.info.node_id, command, self._wall(), replace_kind=replace_kind)
            return
        if self._journal is not None and not local:
            self._journal.queue(entry.info.node_id, command, self._wall(), replace_kind=replace_kind)
        if replace_kind:
            kind = command.WhichOneof("command")
            entry.pending = [c for c in entry.pending if c.WhichOneof("command") != kind]
        entry.pending.append(command)

    def broadcast_peers(self) -> None:
        """Tell every edge which cloud nodes exist now (delivered with its next heartbeat)."""
        self._clouds_changed += 1

    def _refresh_peers(self, edge: NodeEntry) -> None:
        """Queue the clouds' current statuses for ``edge`` if they changed since it was last handed them,
        replacing an undelivered update: the routing load an edge holds is never older than one of its
        heartbeat intervals plus the cloud's own last report."""
        version = self._peers()
        if edge.peers_version != version:
            edge.peers_version = version
            self._queue(edge, self._peers_command, replace_kind=True, local=True)  # built per replica, each beat

    def _peers(self) -> int:
        """The version of the clouds' statuses as edges see them, re-built only when they changed: a cloud
        came, went or reported another routing load (counted as it happens), or its health moved on."""
        clouds = sorted(self._clouds.values(), key=lambda e: e.info.node_id)
        key = (self._clouds_changed, tuple(self._health(e) for e in clouds))
        if key != self._peers_key:
            statuses = [self._routing_status(e) for e in clouds]
            peers = control_plane_pb2.PeersUpdate(cloud_nodes=[s for s in statuses
                                                               if s.health != common_pb2.NODE_HEALTH_LOST])
            self._peers_command = control_plane_pb2.NodeCommand(command_id=uuid.uuid4().hex, peers_update=peers)
            self._peers_key, self._peers_version = key, self._peers_version + 1
        return self._peers_version

    def _routing_status(self, entry: NodeEntry) -> common_pb2.NodeStatus:
        """A cloud's status as far as edges route on it (no last_heartbeat: ``health`` says how fresh it is)."""
        status = common_pb2.NodeStatus(info=entry.info, load=_routing_load(entry.load), health=self._health(entry))
        status.registered_at.FromSeconds(int(entry.registered_at + self._wall_offset))
        return status

    def statuses(self, role: int = common_pb2.NODE_ROLE_UNSPECIFIED) -> list[common_pb2.NodeStatus]:
        return [self.status(e) for e in self._entries(role)]

    def status(self, entry: NodeEntry) -> common_pb2.NodeStatus:
        status = common_pb2.NodeStatus(info=entry.info, load=entry.load, health=self._health(entry))
        status.last_heartbeat.FromSeconds(int(entry.last_heartbeat + self._wall_offset))
        status.registered_at.FromSeconds(int(entry.registered_at + self._wall_offset))
        return status

    def pick_edge(self, cell_id: str) -> NodeEntry:
        """The least-loaded serving edge that covers ``cell_id``, among those covering no saturated cell if any
        does (an edge that also serves a saturated cell is about to be busy with that cell's crowd)."""
        candidates = [e for e in self._by_cell.get(cell_id, {}).values() if self._is_serving(e)]
        if not candidates:
            known = sorted({c for e in self._serving(common_pb2.NODE_ROLE_EDGE) for c in e.info.cell_ids})
            raise NotFound(f"no serving edge node covers cell {cell_id!r}; covered cells: {known}")
        saturated = self.saturated_cells()
        return min(candidates, key=lambda e: (covers_any(e.info, saturated), self._rank(e)))

    def pick_cloud(self) -> NodeEntry | None:
        """The least-loaded serving cloud node, or None (the edge then answers alone)."""
        candidates = [e for e in self._clouds.values() if self._is_serving(e)]
        return min(candidates, key=self._rank) if candidates else None

    def _entries(self, role: int) -> list[NodeEntry]:
        entries = sorted(self._nodes.values(), key=lambda e: e.info.node_id)
        return [e for e in entries if role in (common_pb2.NODE_ROLE_UNSPECIFIED, e.info.role)]

    def _serving(self, role: int) -> list[NodeEntry]:
        return [e for e in self._entries(role) if self._is_serving(e)]

    def _is_serving(self, entry: NodeEntry) -> bool:
        return self._clock() - entry.last_heartbeat <= self.stale_after_s

    def _health(self, entry: NodeEntry) -> common_pb2.NodeHealth:
        silent_s = self._clock() - entry.last_heartbeat
        if silent_s <= self.stale_after_s:
            return common_pb2.NODE_HEALTH_SERVING
        if self.lost_after_s and silent_s > self.lost_after_s:
            return common_pb2.NODE_HEALTH_LOST
        return common_pb2.NODE_HEALTH_STALE

    def sweep(self) -> list[str]:
        """Log the nodes that became LOST since the last sweep; drop (and return) those silent for longer
        than ``retention_s``. The core runs it every heartbeat interval."""
        now, dropped = self._clock(), []
        for entry in list(self._nodes.values()):
            node_id, silent_s = entry.info.node_id, now - entry.last_heartbeat
            if self.retention_s and silent_s > self.retention_s:
                del self._nodes[node_id]
                self._unindex(entry)
                dropped.append(node_id)
                for store in (self._shared, self._journal):
                    if store is not None:
                        store.drop(node_id)
                log.warning("cp.node_dropped", node_id=node_id, silent_s=round(silent_s, 1),
                            retention_s=self.retention_s)
            elif not entry.lost and self._health(entry) == common_pb2.NODE_HEALTH_LOST:
                entry.lost = True
                log.warning("cp.node_lost", node_id=node_id, silent_s=round(silent_s, 1),
                            lost_after_s=self.lost_after_s)
        if dropped:
            self.broadcast_peers()
        return dropped

    def _rank(self, entry: NodeEntry) -> tuple[float, str]:
        return least_loaded_key(self.status(entry))


def covers_any(info: common_pb2.NodeInfo, cells: frozenset[str]) -> bool:
    """Whether the node serves any of ``cells``."""
    return bool(cells) and any(c in cells for c in info.cell_ids)


def _routing_load(load: common_pb2.NodeLoad) -> common_pb2.NodeLoad:
    """What of a cloud's load an edge routes on (``netgpt.node_status``, ``edge_node.serving``)."""
    return common_pb2.NodeLoad(queue_depth=load.queue_depth, active_requests=load.active_requests,
                               p50_first_token_ms=load.p50_first_token_ms, models_served=load.models_served)
