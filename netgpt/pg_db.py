"""The core's state in PostgreSQL (psycopg 3): the :class:`netgpt.database.Database` several core
replicas share.

A small pool of connections (``psycopg_pool``), so that calls made from several threads run at once: the
core hands session writes, which wait for PostgreSQL's disk flush, to threads (``cp.sessions``), and their
commits then share flushes instead of queuing behind one connection. Every change is one transaction, and
stores write queries that stay correct when other replicas run them at once. The schema version is a row
of ``netgpt_schema``; the steps a database lacks run under an advisory lock, so replicas starting together
migrate it once. A connection that breaks is an :class:`netgpt.errors.Unavailable` for the call that
found it (the caller sees UNAVAILABLE, the daemon goes on); the pool drops it and opens another. The
password never reaches a log or an error.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import psycopg
import structlog
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from netgpt.database import Dialect, Migration, named_lock, run_migrations
from netgpt.errors import StartupError, Unavailable

log = structlog.get_logger(__name__)

URL_SCHEMES = ("postgresql://", "postgres://")
CONNECT_TIMEOUT_S = 5
POOL_SIZE = 4  # connections per process: the threads the core writes sessions from, plus its event loop
MIGRATION_LOCK = 0x6E6574677074  # pg_advisory_xact_lock key while a schema is brought up to date ("netgpt")
EXCLUSIVE_LOCKS = 0x6E67 << 32  # pg_advisory_lock keys of exclusive(name): this plus the name's crc32


def is_pg_url(text: str) -> bool:
    return text.startswith(URL_SCHEMES)


def redacted(url: str) -> str:
    """``url`` as ``postgresql://user@host:port/dbname``: what logs and errors may show."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise StartupError(f"state_db: not a PostgreSQL URL libpq accepts ({_first_line(exc)})") from None
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{parts.get('host', '')}{port}/{parts.get('dbname', '')}"


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


@lru_cache(maxsize=512)
def _pg_sql(sql: str) -> str:
    """The stores' ``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


class PgTx:
    """A transaction on one connection, with the two calls :class:`netgpt.database.Tx` names."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> psycopg.Cursor[Any]:
        return self._conn.execute(_pg_sql(sql), parameters)

    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]], /) -> None:
        rows = list(seq_of_parameters)
        if rows:
            self._conn.cursor().executemany(_pg_sql(sql), rows)


class PgDb:
    """A PostgreSQL database (a libpq URL) at the version its migrations make; safe from several threads.

    ``label`` names it in errors and logs (``"core state"``); :attr:`where` is the URL without password.
    """

    dialect: Dialect = "postgresql"

    def __init__(self, url: str, migrations: Sequence[Migration], label: str, pool_size: int = POOL_SIZE) -> None:
        self.where = redacted(url)
        self.host = str(conninfo_to_dict(url).get("host") or "the local socket")
        self.label = label
        self.version = len(migrations)
        self._exclusive: dict[str, threading.Lock] = {}
        options: dict[str, Any] = {"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S,
                                   "application_name": "netgpt-core"}
        try:  # one connection first: its error says why, where the pool's would only time out
            psycopg.connect(url, **options).close()
        except psycopg.Error as exc:
            raise StartupError(f"{label} {self.where}: cannot connect to PostgreSQL on host {self.host}: "
                               f"{_first_line(exc)}") from None
        self._pool = ConnectionPool(url, kwargs=options, min_size=1, max_size=pool_size, timeout=CONNECT_TIMEOUT_S,
                                    name="netgpt-core", open=True)
        try:
            self._migrate(migrations)
        except (psycopg.Error, Unavailable) as exc:
            self.close()
            raise StartupError(f"{label} {self.where}: {_first_line(exc)}") from None
        except BaseException:
            self.close()
            raise

    def _migrate(self, migrations: Sequence[Migration]) -> None:
        with self.transaction() as tx:
            tx.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
            tx.execute("CREATE TABLE IF NOT EXISTS netgpt_schema (version INTEGER NOT NULL)")
            row = tx.execute("SELECT version FROM netgpt_schema").fetchone()
            run_migrations(tx, migrations, int(row[0]) if row else 0, self.label, self.where)
            if row is None:
                tx.execute("INSERT INTO netgpt_schema (version) VALUES (?)", (self.version,))
            else:
                tx.execute("UPDATE netgpt_schema SET version = ?", (self.version,))

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection of the pool; a lost one (or none within the connect timeout) becomes
        :class:`Unavailable`, and the pool replaces a broken connection when it comes back."""
        try:
            with self._pool.connection() as conn:
                yield conn
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:  # lost, or e.g. a deadlock
            log.warning("state.db_unavailable", db=self.where, error=_first_line(exc))
            self._pool.check()  # the idle connections lost with it are replaced now, not found by the next calls
            raise Unavailable(f"{self.label} {self.where}: PostgreSQL unavailable "
                              f"({_first_line(exc)}); retry") from exc

    @contextmanager
    def transaction(self) -> Iterator[PgTx]:
        """One transaction on a connection of the pool: committed on leaving, rolled back on any exception."""
        with self._connection() as conn, conn.transaction():
            yield PgTx(conn)

    def query(self, sql: str, args: tuple[object, ...] = ()) -> list[Any]:
        with self._connection() as conn:
            return conn.execute(_pg_sql(sql), args).fetchall()

    @contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """An advisory lock held on a connection of its own while the caller decides (its writes go through
        other connections), taken after the process's own lock of the name, so that this process's threads
        queue without holding connections."""
        key = EXCLUSIVE_LOCKS + zlib.crc32(name.encode())
        with named_lock(self._exclusive, name), self._connection() as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (key,))
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))

    def close(self) -> None:
        self._pool.close()
