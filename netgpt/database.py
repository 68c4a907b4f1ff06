"""What the core's stores need of a SQL database, so that one implementation of each store runs on
SQLite (:class:`netgpt.sqlite_db.SqliteDb`, one machine) and on PostgreSQL (:class:`netgpt.pg_db.PgDb`,
replicas sharing one database).

Stores write their queries once, in the subset both speak: ``?`` placeholders (the PostgreSQL adapter
turns them into ``%s``), ``INSERT ... ON CONFLICT (...) DO UPDATE``, no ``rowid``. Where the two
differ the dialect says how (:func:`typed` for column types, :func:`skip_locked`, :func:`lock_table`).
Each database keeps one numbered migration path (:class:`Migration`, :func:`run_migrations`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import structlog

from netgpt.errors import StartupError

log = structlog.get_logger(__name__)

Dialect = Literal["sqlite", "postgresql"]

_TYPES: dict[str, dict[str, str]] = {
    "sqlite": {"blob": "BLOB", "real": "REAL"},
    "postgresql": {"blob": "BYTEA", "real": "DOUBLE PRECISION"},
}


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Tx(Protocol):
    """One open transaction (``sqlite3.Connection`` is one; so is :class:`netgpt.pg_db.PgTx`)."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...
    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]], /) -> object: ...


class Database(Protocol):
    """An open database at the version its migrations make; safe from several threads."""

    @property
    def dialect(self) -> Dialect: ...
    @property
    def version(self) -> int: ...
    @property
    def where(self) -> str:
        """Where it is, for logs and errors (a path, or a URL without its password)."""
        ...

    def transaction(self) -> AbstractContextManager[Tx]:
        """One transaction: committed on leaving, rolled back on any exception."""
        ...

    def query(self, sql: str, args: tuple[object, ...] = ()) -> list[Any]: ...

    def exclusive(self, name: str) -> AbstractContextManager[None]:
        """Hold the lock ``name`` for a decision that must not interleave with the same decision elsewhere
        (placing a job, planning a deploy): across replicas on PostgreSQL, within the process on SQLite."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Migration:
    """One step of a database's schema. ``apply`` runs inside the opening transaction and returns counts
    for the log (e.g. ``{"sessions": 12}``: rows it rewrote or took in)."""

    name: str
    apply: Callable[[Tx], Mapping[str, int]]


_NAMED_LOCKS = threading.Lock()


@contextmanager
def named_lock(locks: dict[str, threading.Lock], name: str) -> Iterator[None]:
    """Hold ``locks[name]`` (made on first use): the process's part of :meth:`Database.exclusive`."""
    with _NAMED_LOCKS:
        lock = locks.setdefault(name, threading.Lock())
    with lock:
        yield


def typed(template: str, dialect: Dialect) -> str:
    """``template`` with ``{blob}`` and ``{real}`` as the dialect's column types."""
    return template.format(**_TYPES[dialect])


def skip_locked(dialect: Dialect) -> str:
    """The clause that makes a ``SELECT`` of rows to change skip rows another transaction is changing:
    PostgreSQL replicas sweeping at once then each take their own rows; SQLite has one writer anyway."""
    return " FOR UPDATE SKIP LOCKED" if dialect == "postgresql" else ""


def lock_table(tx: Tx, dialect: Dialect, table: str) -> None:
    """Serialise writers of ``table`` until ``tx`` ends (PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already does):
    for changes that read and rewrite the whole table, which row locks cannot make atomic."""
    if dialect == "postgresql":
        tx.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")


def run_migrations(tx: Tx, migrations: Sequence[Migration], found: int, label: str, where: str) -> None:
    """The steps a database at version ``found`` lacks, in ``tx``; a database newer than the list is refused.
    The caller records ``len(migrations)`` as its version in the same transaction."""
    version = len(migrations)
    if found > version:
        raise StartupError(f"{label} {where}: schema version {found} is newer than this NetGPT knows ({version}); "
                           "use a newer NetGPT or another state_db")
    for number, step in enumerate(migrations[found:], start=found + 1):
        counts = step.apply(tx)
        if found or any(counts.values()):  # a new database's steps are not news, unless they took something in
            log.info("state.migrated", path=where, to_version=number, step=step.name, **counts)
