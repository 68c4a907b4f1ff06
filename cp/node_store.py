"""The node registry shared by core replicas: every node's last beat, and each node's command queue.

One core keeps its registry in memory (``cp.registry``). Core replicas on one PostgreSQL database
also write what they hear here, so that each replica knows every node (placement, routing, the
clouds an edge is told about) whichever replica the node beats to, and a command queued at one
replica reaches the node through whichever replica it beats to next. A queued command is a row
until a beat takes it (in the same transaction that records the beat), so a command the core
acknowledged survives the replica that queued it.

A beat's (and a registration's) transaction does not wait for PostgreSQL's disk flush
(``synchronous_commit = off``: about 0.3 ms instead of 3 ms here, ``bench.state_backends``): if the
database server itself crashes, the last beats are lost (the next ones repeat them) and commands taken
just before may be delivered again.
Queuing a command waits for the flush, so an acknowledged command is never lost.

One core (SQLite) keeps its registry in memory but journals each node's queue here (the
``journal`` of :class:`cp.registry.NodeRegistry`: :meth:`NodeStore.queue`, :meth:`NodeStore.pending`,
:meth:`NodeStore.taken`): a command acknowledged before the core was killed is handed to the node when
it registers again with the restarted core.

Times are the replicas' wall clocks (unix s): keep replica clocks in sync (NTP), as for any
lease-based system; a skew shows as a node looking fresher or staler by that much.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from netgpt.database import Database, Dialect, Migration, Tx, typed
from netgpt.v1 import common_pb2
from netgpt.v1 import control_plane_pb2 as cp_pb2

_TABLES = (
    """CREATE TABLE IF NOT EXISTS nodes (
        node_id       TEXT PRIMARY KEY,
        info          {blob} NOT NULL,  -- netgpt.v1.NodeInfo, serialized
        load          {blob} NOT NULL,  -- netgpt.v1.NodeLoad of its last beat
        registered_at {real} NOT NULL,  -- unix s
        last_seen     {real} NOT NULL   -- unix s of its last beat (or registration)
    )""",
    "CREATE INDEX IF NOT EXISTS nodes_by_last_seen ON nodes (last_seen)",
    """CREATE TABLE IF NOT EXISTS node_commands (
        command_id TEXT PRIMARY KEY,
        node_id    TEXT NOT NULL,
        kind       TEXT NOT NULL,       -- which NodeCommand field is set (one of a kind may replace another)
        queued_at  {real} NOT NULL,
        seq        BIGINT NOT NULL,     -- the queuing replica's own order (ties of queued_at)
        command    {blob} NOT NULL      -- netgpt.v1.NodeCommand, serialized
    )""",
    "CREATE INDEX IF NOT EXISTS node_commands_by_node ON node_commands (node_id, queued_at)",
)


def node_tables(dialect: Dialect) -> Migration:
    """The migration step that adds the shared registry's tables."""
    def apply(tx: Tx) -> dict[str, int]:
        for statement in _TABLES:
            tx.execute(typed(statement, dialect))
        return {}
    return Migration("shared node registry: nodes, node command queues", apply)


@dataclass(frozen=True)
class SharedNode:
    info: common_pb2.NodeInfo
    load: common_pb2.NodeLoad
    registered_at: float  # unix s
    last_seen: float  # unix s


class NodeStore:
    """The shared registry in ``db`` (SQLite or PostgreSQL: one SQL for both)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._seq = itertools.count()

    def put_node(self, info: common_pb2.NodeInfo, at: float) -> None:
        """A node (re-)registered at ``at``: its info, an empty load, seen now."""
        with self._db.transaction() as tx:
            self._no_flush_wait(tx)  # the node registers again whenever a core does not know it
            tx.execute("INSERT INTO nodes (node_id, info, load, registered_at, last_seen) VALUES (?, ?, ?, ?, ?) "
                       "ON CONFLICT (node_id) DO UPDATE SET info = excluded.info, load = excluded.load, "
                       "registered_at = excluded.registered_at, last_seen = excluded.last_seen",
                       (info.node_id, info.SerializeToString(deterministic=True), b"", at, at))

    def beat(self, node_id: str, load: common_pb2.NodeLoad, at: float) -> list[cp_pb2.NodeCommand]:
        """Record a beat and take (delete) the commands queued for the node, oldest first, in one transaction."""
        with self._db.transaction() as tx:
            self._no_flush_wait(tx)  # the next beat repeats this one
            tx.execute("UPDATE nodes SET load = ?, last_seen = ? WHERE node_id = ?",
                       (load.SerializeToString(deterministic=True), at, node_id))
            rows = tx.execute("DELETE FROM node_commands WHERE node_id = ? RETURNING queued_at, seq, command",
                              (node_id,)).fetchall()
        return [cp_pb2.NodeCommand.FromString(bytes(blob)) for _, _, blob in sorted(rows, key=lambda r: (r[0], r[1]))]

    def _no_flush_wait(self, tx: Tx) -> None:
        if self._db.dialect == "postgresql":
            tx.execute("SET LOCAL synchronous_commit = off")

    def queue(self, node_id: str, command: cp_pb2.NodeCommand, at: float, replace_kind: bool = False) -> None:
        """Queue ``command`` for the node; ``replace_kind``: in place of undelivered commands of its kind."""
        kind = command.WhichOneof("command") or ""
        with self._db.transaction() as tx:
            if replace_kind:
                tx.execute("DELETE FROM node_commands WHERE node_id = ? AND kind = ?", (node_id, kind))
            tx.execute("INSERT INTO node_commands (command_id, node_id, kind, queued_at, seq, command) "
                       "VALUES (?, ?, ?, ?, ?, ?)", (command.command_id, node_id, kind, at, next(self._seq),
                                                     command.SerializeToString(deterministic=True)))

    def pending(self, node_id: str) -> list[cp_pb2.NodeCommand]:
        """The node's undelivered commands, oldest first (a journal read once, when the node registers)."""
        rows = self._db.query("SELECT command FROM node_commands WHERE node_id = ? ORDER BY queued_at, seq",
                              (node_id,))
        return [cp_pb2.NodeCommand.FromString(bytes(blob)) for (blob,) in rows]

    def taken(self, command_ids: list[str]) -> None:
        """Commands handed to their node (a journal's delivered entries)."""
        with self._db.transaction() as tx:
            tx.executemany("DELETE FROM node_commands WHERE command_id = ?", [(c,) for c in command_ids])

    def seen_since(self, since: float) -> list[SharedNode]:
        """The nodes whose last beat (or registration) is after ``since``, by node id."""
        rows = self._db.query("SELECT info, load, registered_at, last_seen FROM nodes WHERE last_seen > ? "
                              "ORDER BY node_id", (since,))
        return [SharedNode(common_pb2.NodeInfo.FromString(bytes(info)), common_pb2.NodeLoad.FromString(bytes(load)),
                           float(registered_at), float(last_seen)) for info, load, registered_at, last_seen in rows]

    def drop(self, node_id: str) -> None:
        """Forget a node gone for good, with its undelivered commands."""
        with self._db.transaction() as tx:
            tx.execute("DELETE FROM node_commands WHERE node_id = ?", (node_id,))
            tx.execute("DELETE FROM nodes WHERE node_id = ?", (node_id,))

    def queued(self, node_id: str) -> int:
        return int(self._db.query("SELECT count(*) FROM node_commands WHERE node_id = ?", (node_id,))[0][0])
