"""The core's UE token revocations across restarts: a revoked token must not work again because the
core restarted. One small table in the core's database, SQLite or PostgreSQL (step 4 of its migration
path, composed in ``core.state``), behind a protocol with an in-memory twin for ``state_db = ":memory:"``.

Rows are ``ue_id → issued_before`` (unix s); the row of :data:`ALL_UES` holds the time before which
every token is refused (the folded overflow of :class:`netgpt.ue_tokens.Revocations`). Rows older
than any live token are deleted by :meth:`RevocationStore.prune`.
"""

from __future__ import annotations

from typing import Protocol

from netgpt.database import Database, Dialect, Migration, Tx, typed

ALL_UES = ""  # not a valid UE id, so it cannot clash with one

TABLE = """CREATE TABLE IF NOT EXISTS ue_token_revocations (
    ue_id         TEXT PRIMARY KEY,   -- '' = every UE
    issued_before {real} NOT NULL       -- unix seconds: the UE's tokens issued at or before are refused
)"""


def revocations_table(dialect: Dialect) -> Migration:
    """The schema step that adds ``ue_token_revocations`` in ``dialect``."""

    def apply(db: Tx) -> dict[str, int]:
        db.execute(typed(TABLE, dialect))
        db.execute("CREATE INDEX IF NOT EXISTS ue_token_revocations_by_time ON ue_token_revocations (issued_before)")
        return {}

    return Migration("UE token revocations", apply)


class RevocationStore(Protocol):
    def load(self) -> dict[str, float]: ...
    def put(self, ue_id: str, issued_before: float) -> None: ...
    def prune(self, before: float) -> int:
        """Delete the rows older than ``before``; returns how many."""
        ...


class MemoryRevocations:
    def __init__(self) -> None:
        self._rows: dict[str, float] = {}

    def load(self) -> dict[str, float]:
        return dict(self._rows)

    def put(self, ue_id: str, issued_before: float) -> None:
        self._rows[ue_id] = max(issued_before, self._rows.get(ue_id, 0.0))

    def prune(self, before: float) -> int:
        old = [ue_id for ue_id, at in self._rows.items() if at < before]
        for ue_id in old:
            del self._rows[ue_id]
        return len(old)


class SqlRevocations:
    """Rows in the core's database; a put only ever moves a UE's time later, also when replicas race."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def load(self) -> dict[str, float]:
        return {str(ue_id): float(at) for ue_id, at in
                self._db.query("SELECT ue_id, issued_before FROM ue_token_revocations")}

    def put(self, ue_id: str, issued_before: float) -> None:
        with self._db.transaction() as db:
            db.execute("INSERT INTO ue_token_revocations (ue_id, issued_before) VALUES (?, ?) ON CONFLICT (ue_id) "
                       "DO UPDATE SET issued_before = excluded.issued_before "
                       "WHERE excluded.issued_before > ue_token_revocations.issued_before",
                       (ue_id, issued_before))

    def prune(self, before: float) -> int:
        with self._db.transaction() as db:
            return db.execute("DELETE FROM ue_token_revocations WHERE issued_before < ?", (before,)).rowcount


SqliteRevocations = SqlRevocations  # its name from when SQLite was the only database
