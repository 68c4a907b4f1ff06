"""The core's one durable store: a SQLite file holding everything the core must not lose (applied
workflows, routing policies, AI sessions, fine-tuning jobs, UE token revocations), each behind the
protocol of the plane that owns it (``cp.state_db.CoreState``, ``cmp.job_store.JobStore``,
``cp.ue_token_store.RevocationStore``).

The file has one schema version and one migration path, :func:`migrations`: version N is the
N-th step, so steps are only ever appended. A file an older core wrote is brought up to date on
open, in one transaction; that includes the jobs cores before schema 3 kept as files under
``store_dir/training-jobs/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cmp.job_store import JobStore, MemoryJobStore, SqliteJobStore, jobs_table
from cp.state_db import CREATE_TABLES, SESSION_UES, CoreState, MemoryState, SqliteState
from cp.ue_token_store import REVOCATIONS_TABLE, MemoryRevocations, RevocationStore, SqliteRevocations
from netgpt.sqlite_db import Migration, SqliteDb

STATE_FILE = "core.sqlite"  # inside the store dir unless ``state_db`` names another file
LEGACY_JOBS_DIR = "training-jobs"  # inside the store dir: where cores before schema 3 kept their jobs


def migrations(legacy_jobs: Path | None = None) -> tuple[Migration, ...]:
    """The core file's steps, oldest first; ``legacy_jobs``: the job files step 3 takes in."""
    return (
        CREATE_TABLES,  # 1: workflows, routing policies, sessions
        SESSION_UES,  # 2: sessions.ue_id (the sessions of a UE, for handovers)
        jobs_table(legacy_jobs),  # 3: training jobs, with those an older core kept as files
        REVOCATIONS_TABLE,  # 4: UE token revocations (detached UEs)
    )


SCHEMA_VERSION = len(migrations())


@dataclass(frozen=True)
class CoreStores:
    """The core's durable state, one protocol per plane; ``db`` is None when nothing is kept."""

    state: CoreState
    jobs: JobStore
    revocations: RevocationStore
    db: SqliteDb | None = None

    @property
    def where(self) -> str:
        return str(self.db.path) if self.db is not None else ":memory:"

    def close(self) -> None:
        if self.db is not None:
            self.db.close()


def open_db(path: Path, legacy_jobs: Path | None = None) -> SqliteDb:
    """The core's SQLite file at ``path``, migrated to :data:`SCHEMA_VERSION`."""
    return SqliteDb(path, migrations(legacy_jobs), label="core state")


def open_stores(state_db: str, store_dir: Path) -> CoreStores:
    """``:memory:`` → nothing kept; empty → ``core.sqlite`` in the store dir; else that file."""
    if state_db == ":memory:":
        return CoreStores(MemoryState(), MemoryJobStore(), MemoryRevocations())
    db = open_db(Path(state_db).expanduser() if state_db else store_dir / STATE_FILE, store_dir / LEGACY_JOBS_DIR)
    return CoreStores(SqliteState(db), SqliteJobStore(db), SqliteRevocations(db), db)
