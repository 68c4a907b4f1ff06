"""Leases: work that must run on one core replica at a time (sweeping sessions, supervising jobs) runs
only while that replica holds the lease of its name.

One core (memory or SQLite state) holds every lease always (:class:`LocalLease`). Replicas sharing a
PostgreSQL database hold a row of ``leases`` (:class:`DbLease`): the holder renews it more often than its
``ttl_s``; another takes it once it has not been renewed for ``ttl_s`` by the database's clock, so a
replica that dies loses it within ``ttl_s``. A holder believes it holds the lease only until ``ttl_s``
after it *sent* its last successful renewal (its own monotonic clock), which is never later than the
database lets another replica take it.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import Protocol

import structlog

from netgpt.database import Database, Migration, Tx

log = structlog.get_logger(__name__)

TABLE = """CREATE TABLE IF NOT EXISTS leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,          -- host:pid:random of the replica that holds it
    expires_at TIMESTAMPTZ NOT NULL    -- by the database's clock
)"""

# take or renew in one statement: a new row, or the row if it is ours or has expired
_RENEW = ("INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, now() + make_interval(secs => ?)) "
          "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at "
          "WHERE leases.holder = excluded.holder OR leases.expires_at < now() RETURNING holder")


def _create_table(tx: Tx) -> dict[str, int]:
    tx.execute(TABLE)
    return {}


LEASES_TABLE = Migration("leases (work one replica does at a time)", _create_table)  # PostgreSQL only


def new_holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def holder(self) -> str: ...
    @property
    def ttl_s(self) -> float: ...

    def held(self) -> bool:
        """Whether this replica may do the lease's work now."""
        ...

    def renew(self) -> bool:
        """Take the lease, or extend it if held; returns :meth:`held`. Never raises: a database that does
        not answer leaves the lease held until it expires."""
        ...

    def release(self) -> None:
        """Give the lease up now (another replica may take it at once)."""
        ...


class LocalLease:
    """The lease of a core that is the only one: always held."""

    def __init__(self, name: str, ttl_s: float = 0.0, holder: str = "") -> None:
        self.name, self.ttl_s, self.holder = name, ttl_s, holder or new_holder_id()

    def held(self) -> bool:
        return True

    def renew(self) -> bool:
        return True

    def release(self) -> None:
        pass


class DbLease:
    """A lease row in a PostgreSQL database several replicas share."""

    def __init__(self, db: Database, name: str, ttl_s: float, holder: str = "",
                 clock: Callable[[], float] = time.monotonic) -> None:
        if ttl_s <= 0:
            raise ValueError("a lease needs ttl_s > 0")
        self.name, self.ttl_s, self.holder = name, ttl_s, holder or new_holder_id()
        self._db = db
        self._clock = clock
        self._until = float("-inf")  # by our clock: held before this
        self._said_held = False  # what the last lease.acquired / lease.lost event told

    def held(self) -> bool:
        held = self._clock() < self._until
        self._tell(held, "not renewed in time")
        return held

    def _tell(self, held: bool, reason: str) -> None:
        if held == self._said_held:
            return
        self._said_held = held
        if held:
            log.info("lease.acquired", lease=self.name, holder=self.holder, ttl_s=self.ttl_s)
        else:
            log.warning("lease.lost", lease=self.name, holder=self.holder, reason=reason)

    def renew(self) -> bool:
        started = self._clock()
        try:
            with self._db.transaction() as tx:
                ours = bool(tx.execute(_RENEW, (self.name, self.holder, self.ttl_s)).fetchall())
        except Exception as exc:  # the database is away: keep what we have until it runs out
            log.warning("lease.renew_failed", lease=self.name, holder=self.holder, error=str(exc))
            return self.held()
        self._until = started + self.ttl_s if ours else float("-inf")
        held = self._clock() < self._until
        self._tell(held, "another replica holds it")
        return held

    def release(self) -> None:
        self._until = float("-inf")
        try:
            with self._db.transaction() as tx:
                tx.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (self.name, self.holder))
        except Exception as exc:  # it expires on its own
            log.warning("lease.release_failed", lease=self.name, holder=self.holder, error=str(exc))
        if self._said_held:
            self._said_held = False
            log.info("lease.released", lease=self.name, holder=self.holder)
