"""The core's state in PostgreSQL (psycopg 3): the :class:`netgpt.database.Database` several core
replicas share.

One connection per process behind a lock, like :class:`netgpt.sqlite_db.SqliteDb`; every change is one
transaction, and stores write queries that stay correct when other replicas run them at once. The
schema version is a row of ``netgpt_schema``; the steps a database lacks run under an advisory lock,
so replicas starting together migrate it once. A connection that breaks is an
:class:`netgpt.errors.Unavailable` for the call that found it (the caller sees UNAVAILABLE, the
daemon goes on) and is opened again by the next call. The password never reaches a log or an error.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import psycopg
import structlog
from psycopg.conninfo import conninfo_to_dict

from netgpt.database import Dialect, Migration, run_migrations
from netgpt.errors import StartupError, Unavailable

log = structlog.get_logger(__name__)

URL_SCHEMES = ("postgresql://", "postgres://")
CONNECT_TIMEOUT_S = 5
MIGRATION_LOCK = 0x6E6574677074  # pg_advisory_xact_lock key while a schema is brought up to date ("netgpt")


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

    def __init__(self, url: str, migrations: Sequence[Migration], label: str) -> None:
        self._url = url
        self.where = redacted(url)
        self.host = str(conninfo_to_dict(url).get("host") or "the local socket")
        self.label = label
        self.version = len(migrations)
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        try:
            self._conn = self._connect()
        except psycopg.Error as exc:
            raise StartupError(f"{label} {self.where}: cannot connect to PostgreSQL on host {self.host}: "
                               f"{_first_line(exc)}") from None
        try:
            self._migrate(migrations)
        except (psycopg.Error, Unavailable) as exc:
            self.close()
            raise StartupError(f"{label} {self.where}: {_first_line(exc)}") from None
        except BaseException:
            self.close()
            raise

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
                               application_name="netgpt-core")

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
        """The open connection (opened again if the last one broke), under the lock; a lost connection
        becomes :class:`Unavailable`, and the next call connects anew."""
        with self._lock:
            try:
                if self._conn is None or self._conn.closed:  # a broken connection is closed too
                    self._drop()
                    self._conn = self._connect()
                    log.info("state.db_reconnected", db=self.where)
                yield self._conn
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:  # lost, or e.g. a deadlock: retry
                if self._conn is not None and self._conn.closed:
                    self._drop()
                log.warning("state.db_unavailable", db=self.where, error=_first_line(exc))
                raise Unavailable(f"{self.label} {self.where}: PostgreSQL unavailable "
                                  f"({_first_line(exc)}); retry") from exc

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
            self._conn = None

    @contextmanager
    def transaction(self) -> Iterator[PgTx]:
        """One transaction on the connection: committed on leaving, rolled back on any exception."""
        with self._connection() as conn, conn.transaction():
            yield PgTx(conn)

    def query(self, sql: str, args: tuple[object, ...] = ()) -> list[Any]:
        with self._connection() as conn:
            return conn.execute(_pg_sql(sql), args).fetchall()

    def close(self) -> None:
        with self._lock:
            self._drop()
