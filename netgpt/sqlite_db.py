"""One SQLite file shared by several owners: WAL mode, one lock, one transaction per change, and
one numbered migration path.

Whoever composes the file (the core's wiring) lists every owner's :class:`Migration` in order:
version N is the N-th step, ``PRAGMA user_version`` records how many steps a file has had, and
the steps it lacks run in one transaction when it is opened. A file newer than the list is
refused. The owners' tables and queries stay with the owners; this module knows none of them.
It is one :class:`netgpt.database.Database`; :class:`netgpt.pg_db.PgDb` is the other.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from netgpt.database import Dialect, Migration, named_lock, run_migrations
from netgpt.errors import StartupError

__all__ = ["Migration", "SqliteDb"]


class SqliteDb:
    """An open SQLite file (WAL mode) at the version its migrations make; safe from several threads.

    ``label`` names the file in errors and logs (``"core state"``).
    """

    dialect: Dialect = "sqlite"

    def __init__(self, path: Path, migrations: Sequence[Migration], label: str) -> None:
        self.path = Path(path)
        self.label = label
        self.version = len(migrations)
        self._lock = threading.Lock()
        self._exclusive: dict[str, threading.Lock] = {}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        except (OSError, sqlite3.Error) as exc:
            raise StartupError(f"{label} {self.path}: cannot open: {exc}") from exc
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: commits survive a process crash
            # deleted rows (released sessions, their UE ids) are zeroed, not left in free pages; in WAL mode
            # the zeroed pages reach the main file at the next checkpoint
            self._db.execute("PRAGMA secure_delete=ON")
            self._migrate(migrations)
        except sqlite3.Error as exc:
            self._db.close()
            raise StartupError(f"{label} {self.path}: {exc} (not a NetGPT state file?)") from exc
        except BaseException:
            self._db.close()
            raise

    @property
    def where(self) -> str:
        return str(self.path)

    def _migrate(self, migrations: Sequence[Migration]) -> None:
        with self.transaction() as db:
            found = int(db.execute("PRAGMA user_version").fetchone()[0])
            run_migrations(db, migrations, found, self.label, self.where)
            db.execute(f"PRAGMA user_version = {self.version}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """The connection inside ``BEGIN IMMEDIATE``; committed on leaving, rolled back on any exception."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def query(self, sql: str, args: tuple[object, ...] = ()) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    @contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """One core per file: a lock of this process is enough."""
        with named_lock(self._exclusive, name):
            yield

    def close(self) -> None:
        with self._lock:
            self._db.close()
