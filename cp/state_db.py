"""The core's durable state: applied workflows, routing policies, AI sessions with their expiry.

One small interface (:class:`CoreState`) with two implementations: :class:`MemoryState`
(``state_db = ":memory:"``, unit tests) and :class:`SqlState` (tables in the core's database, a
:class:`netgpt.database.Database`: the SQLite file, WAL mode, or a PostgreSQL database several core
replicas share; one transaction per change, so a change the core acknowledged survives ``kill -9``, and
each one correct while other replicas write too). The tables come from :func:`state_migrations`, steps
of the database's one migration path (composed in ``core.state``). The registry is not here on purpose:
nodes re-register on their own.

Sessions carry an absolute expiry (unix seconds, or None = never); expired rows are removed
by :meth:`CoreState.sweep_sessions` in batches of bounded size, oldest expiry first.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import structlog

from cp.workflows import Workflow, from_mapping, to_mapping
from netgpt.database import Database, Dialect, Migration, Tx, lock_table, skip_locked, typed
from netgpt.errors import NetGptError
from netgpt.v1 import control_plane_pb2 as cp_pb2

log = structlog.get_logger(__name__)

TABLES = (  # schema 1; {real} and {blob}: the dialect's types (netgpt.database.typed)
    """CREATE TABLE IF NOT EXISTS workflows (
        name       TEXT PRIMARY KEY,
        spec       TEXT NOT NULL,   -- JSON: the workflow as cp.workflows.from_mapping reads it
        applied_at {real} NOT NULL    -- unix seconds
    )""",
    """CREATE TABLE IF NOT EXISTS routing_policies (
        node_id TEXT PRIMARY KEY,   -- '' = every edge, now and later, else one edge
        policy  {blob} NOT NULL       -- netgpt.v1.RoutingPolicy, serialized
    )""",
    """CREATE TABLE IF NOT EXISTS sessions (
        session_id TEXT PRIMARY KEY,
        expires_at {real},            -- unix seconds, NULL = never
        session    {blob} NOT NULL    -- netgpt.v1.AiSession, serialized
    )""",
    "CREATE INDEX IF NOT EXISTS sessions_by_expiry ON sessions (expires_at)",
)


def _add_session_ues(db: Tx) -> dict[str, int]:
    """The UE id of each session in a column of its own (read from the stored session)."""
    db.execute("ALTER TABLE sessions ADD COLUMN ue_id TEXT NOT NULL DEFAULT ''")
    rows = db.execute("SELECT session_id, session FROM sessions").fetchall()
    db.executemany("UPDATE sessions SET ue_id = ? WHERE session_id = ?",
                   [(cp_pb2.AiSession.FromString(bytes(blob)).ue_id, sid) for sid, blob in rows])
    db.execute("CREATE INDEX IF NOT EXISTS sessions_by_ue ON sessions (ue_id)")
    return {"sessions": len(rows)}


def state_migrations(dialect: Dialect) -> tuple[Migration, Migration]:
    """Schema steps 1 (workflows, routing policies, sessions) and 2 (``sessions.ue_id``) in ``dialect``."""

    def create_tables(db: Tx) -> dict[str, int]:
        for statement in TABLES:
            db.execute(typed(statement, dialect))
        return {}

    return (Migration("workflows, routing policies, sessions", create_tables),
            Migration("sessions.ue_id (the sessions of a UE, for handovers)", _add_session_ues))


@dataclass(frozen=True)
class StoredWorkflow:
    workflow: Workflow
    applied_at: float


@dataclass(frozen=True)
class StoredSession:
    session: cp_pb2.AiSession
    expires_at: float | None  # unix seconds; None = never


class CoreState(Protocol):
    """What the core keeps across restarts. Implementations copy what they are given."""

    def workflows(self) -> list[StoredWorkflow]: ...
    def put_workflow(self, workflow: Workflow, applied_at: float) -> None: ...
    def delete_workflow(self, name: str) -> None: ...

    def policies(self) -> dict[str, cp_pb2.RoutingPolicy]: ...
    def replace_policies(self, policies: Mapping[str, cp_pb2.RoutingPolicy]) -> None: ...

    def put_session(self, session: cp_pb2.AiSession, expires_at: float | None) -> None: ...
    def get_session(self, session_id: str) -> StoredSession | None: ...
    def set_session_expiry(self, session_id: str, expires_at: float | None) -> None: ...
    def delete_session(self, session_id: str) -> bool: ...
    def sweep_sessions(self, now: float, limit: int) -> int:
        """Delete at most ``limit`` sessions whose expiry is ``<= now``; returns how many."""
        ...
    def session_count(self) -> int: ...
    def sessions_of_ue(self, ue_id: str) -> list[StoredSession]:
        """Every stored session of ``ue_id`` (expired ones included), by session id."""
        ...

    def close(self) -> None: ...


def _copy_policy(policy: cp_pb2.RoutingPolicy) -> cp_pb2.RoutingPolicy:
    copied = cp_pb2.RoutingPolicy()
    copied.CopyFrom(policy)
    return copied


def _copy_session(session: cp_pb2.AiSession) -> cp_pb2.AiSession:
    copied = cp_pb2.AiSession()
    copied.CopyFrom(session)
    return copied


class MemoryState:
    """Nothing survives the process; same behaviour as :class:`SqlState` otherwise."""

    def __init__(self) -> None:
        self._workflows: dict[str, StoredWorkflow] = {}
        self._policies: dict[str, cp_pb2.RoutingPolicy] = {}
        self._sessions: dict[str, StoredSession] = {}
        self._expiries: list[tuple[float, str]] = []  # heap; entries whose expiry moved are skipped

    def workflows(self) -> list[StoredWorkflow]:
        return [self._workflows[name] for name in sorted(self._workflows)]

    def put_workflow(self, workflow: Workflow, applied_at: float) -> None:
        self._workflows[workflow.name] = StoredWorkflow(workflow, applied_at)

    def delete_workflow(self, name: str) -> None:
        self._workflows.pop(name, None)

    def policies(self) -> dict[str, cp_pb2.RoutingPolicy]:
        return {node_id: _copy_policy(p) for node_id, p in self._policies.items()}

    def replace_policies(self, policies: Mapping[str, cp_pb2.RoutingPolicy]) -> None:
        self._policies = {node_id: _copy_policy(p) for node_id, p in policies.items()}

    def put_session(self, session: cp_pb2.AiSession, expires_at: float | None) -> None:
        self._sessions[session.session_id] = StoredSession(_copy_session(session), expires_at)
        if expires_at is not None:
            heapq.heappush(self._expiries, (expires_at, session.session_id))

    def get_session(self, session_id: str) -> StoredSession | None:
        stored = self._sessions.get(session_id)
        return None if stored is None else StoredSession(_copy_session(stored.session), stored.expires_at)

    def set_session_expiry(self, session_id: str, expires_at: float | None) -> None:
        stored = self._sessions.get(session_id)
        if stored is not None:
            self.put_session(stored.session, expires_at)

    def delete_session(self, session_id: str) -> bool:
        return self._sessions.pop(session_id, None) is not None

    def sweep_sessions(self, now: float, limit: int) -> int:
        removed = 0
        while removed < limit and self._expiries and self._expiries[0][0] <= now:
            expires_at, session_id = heapq.heappop(self._expiries)
            stored = self._sessions.get(session_id)
            if stored is not None and stored.expires_at == expires_at:  # not released, not extended since
                del self._sessions[session_id]
                removed += 1
        return removed

    def session_count(self) -> int:
        return len(self._sessions)

    def sessions_of_ue(self, ue_id: str) -> list[StoredSession]:
        found = [s for s in self._sessions.values() if s.session.ue_id == ue_id]
        return [StoredSession(_copy_session(s.session), s.expires_at)
                for s in sorted(found, key=lambda s: s.session.session_id)]

    def close(self) -> None:
        pass


class SqlState:
    """State in tables of the core's database; each change is its own committed transaction.

    The core calls it from its event loop; the database's lock makes it safe from other threads too.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    @property
    def where(self) -> str:
        return self._db.where

    # --- workflows ---

    def workflows(self) -> list[StoredWorkflow]:
        """Every stored workflow, validated again; one this version refuses is logged and left out."""
        rows = self._db.query("SELECT name, spec, applied_at FROM workflows ORDER BY name")
        stored = []
        for name, spec, applied_at in rows:
            try:
                workflow = from_mapping(json.loads(spec))
            except (ValueError, NetGptError) as exc:
                log.warning("state.workflow_skipped", workflow=name, path=self.where, error=str(exc))
                continue
            stored.append(StoredWorkflow(workflow, float(applied_at)))
        return stored

    def put_workflow(self, workflow: Workflow, applied_at: float) -> None:
        spec = json.dumps(to_mapping(workflow), sort_keys=True)
        with self._db.transaction() as db:
            db.execute("INSERT INTO workflows (name, spec, applied_at) VALUES (?, ?, ?) ON CONFLICT (name) "
                       "DO UPDATE SET spec = excluded.spec, applied_at = excluded.applied_at",
                       (workflow.name, spec, applied_at))

    def delete_workflow(self, name: str) -> None:
        with self._db.transaction() as db:
            db.execute("DELETE FROM workflows WHERE name = ?", (name,))

    # --- routing policies ---

    def policies(self) -> dict[str, cp_pb2.RoutingPolicy]:
        rows = self._db.query("SELECT node_id, policy FROM routing_policies")
        return {str(node_id): cp_pb2.RoutingPolicy.FromString(bytes(blob)) for node_id, blob in rows}

    def replace_policies(self, policies: Mapping[str, cp_pb2.RoutingPolicy]) -> None:
        with self._db.transaction() as db:
            lock_table(db, self._db.dialect, "routing_policies")  # two replicas replacing at once: one after the other
            db.execute("DELETE FROM routing_policies")
            db.executemany("INSERT INTO routing_policies (node_id, policy) VALUES (?, ?)",
                           [(node_id, p.SerializeToString(deterministic=True)) for node_id, p in policies.items()])

    # --- sessions ---

    def put_session(self, session: cp_pb2.AiSession, expires_at: float | None) -> None:
        with self._db.transaction() as db:
            db.execute("INSERT INTO sessions (session_id, expires_at, session, ue_id) VALUES (?, ?, ?, ?) "
                       "ON CONFLICT (session_id) DO UPDATE SET expires_at = excluded.expires_at, "
                       "session = excluded.session, ue_id = excluded.ue_id",
                       (session.session_id, expires_at, session.SerializeToString(deterministic=True),
                        session.ue_id))

    def get_session(self, session_id: str) -> StoredSession | None:
        rows = self._db.query("SELECT session, expires_at FROM sessions WHERE session_id = ?", (session_id,))
        if not rows:
            return None
        blob, expires_at = rows[0]
        return StoredSession(cp_pb2.AiSession.FromString(bytes(blob)),
                             None if expires_at is None else float(expires_at))

    def set_session_expiry(self, session_id: str, expires_at: float | None) -> None:
        with self._db.transaction() as db:
            db.execute("UPDATE sessions SET expires_at = ? WHERE session_id = ?", (expires_at, session_id))

    def delete_session(self, session_id: str) -> bool:
        with self._db.transaction() as db:
            return db.execute("DELETE FROM sessions WHERE session_id = ?", (session_id,)).rowcount > 0

    def sweep_sessions(self, now: float, limit: int) -> int:
        """One transaction; replicas sweeping at once each delete (and count) their own rows."""
        with self._db.transaction() as db:
            return db.execute(
                "DELETE FROM sessions WHERE session_id IN (SELECT session_id FROM sessions WHERE expires_at <= ? "
                f"ORDER BY expires_at LIMIT ?{skip_locked(self._db.dialect)})", (now, limit)).rowcount

    def session_count(self) -> int:
        return int(self._db.query("SELECT count(*) FROM sessions")[0][0])

    def sessions_of_ue(self, ue_id: str) -> list[StoredSession]:
        rows = self._db.query("SELECT session, expires_at FROM sessions WHERE ue_id = ? ORDER BY session_id", (ue_id,))
        return [StoredSession(cp_pb2.AiSession.FromString(bytes(blob)), None if exp is None else float(exp))
                for blob, exp in rows]

    def close(self) -> None:
        self._db.close()


SqliteState = SqlState  # its name from when SQLite was the only database
