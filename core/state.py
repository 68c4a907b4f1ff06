"""The core's one durable store: a database holding everything the core must not lose (applied
workflows, routing policies, AI sessions, fine-tuning jobs, UE token revocations), each behind the
protocol of the plane that owns it (``cp.state_db.CoreState``, ``cmp.job_store.JobStore``,
``cp.ue_token_store.RevocationStore``), and the leases of the work one replica does at a time.

The database is a SQLite file (one core; the default) or PostgreSQL (``state_db =
"postgresql://..."``: several core replicas share it). The same stores run on both; each database
has one schema version and one migration path, :func:`migrations`: version N is the N-th step, so
steps are only ever appended. A file an older core wrote is brought up to date on open, in one
transaction; that includes the jobs cores before schema 3 kept as files under
``store_dir/training-jobs/``. PostgreSQL has the same steps in its own types, and a fifth: leases.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from cmp.job_store import JobStore, MemoryJobStore, SqlJobStore, jobs_table
from cp.node_store import NodeStore, node_tables
from cp.state_db import CoreState, MemoryState, SqlState, state_migrations
from cp.ue_token_store import MemoryRevocations, RevocationStore, SqlRevocations, revocations_table
from netgpt.database import Database, Dialect, Migration
from netgpt.lease import LEASES_TABLE, DbLease, Lease, LocalLease
from netgpt.pg_db import PgDb, is_pg_url
from netgpt.sqlite_db import SqliteDb

STATE_FILE = "core.sqlite"  # inside the store dir unless ``state_db`` names another file
LEGACY_JOBS_DIR = "training-jobs"  # inside the store dir: where cores before schema 3 kept their jobs
LABEL = "core state"


def migrations(legacy_jobs: Path | None = None, dialect: Dialect = "sqlite") -> tuple[Migration, ...]:
    """The database's steps, oldest first; ``legacy_jobs``: the job files step 3 takes in."""
    steps = (
        *state_migrations(dialect),  # 1: workflows, routing policies, sessions; 2: sessions.ue_id
        jobs_table(legacy_jobs, dialect),  # 3: training jobs, with those an older core kept as files
        revocations_table(dialect),  # 4: UE token revocations (detached UEs)
    )
    if dialect != "postgresql":
        return (*steps, node_tables(dialect))  # 5: the nodes' command queues (one core journals them; nodes unused)
    return (*steps,
            LEASES_TABLE,  # 5: leases (replicas share PostgreSQL)
            node_tables(dialect))  # 6: the registry replicas share: nodes' last beats, their command queues


SCHEMA_VERSION = len(migrations())  # the SQLite file's
PG_SCHEMA_VERSION = len(migrations(dialect="postgresql"))


@dataclass(frozen=True)
class CoreStores:
    """The core's durable state, one protocol per plane; ``db`` is None when nothing is kept."""

    state: CoreState
    jobs: JobStore
    revocations: RevocationStore
    db: Database | None = None

    @property
    def where(self) -> str:
        return self.db.where if self.db is not None else ":memory:"

    def lease(self, name: str, ttl_s: float) -> Lease:
        """The lease ``name``: a row of the database replicas share (PostgreSQL), else always held (one core)."""
        if self.shared and self.db is not None:
            return DbLease(self.db, name, ttl_s)
        return LocalLease(name, ttl_s)

    @property
    def shared(self) -> bool:
        """Whether core replicas may share this state (PostgreSQL); one core's SQLite file is its own."""
        return self.db is not None and self.db.dialect == "postgresql"

    def shared_nodes(self) -> NodeStore | None:
        """The registry replicas share; None for one core, whose registry is its memory."""
        return NodeStore(self.db) if self.shared and self.db is not None else None

    def exclusive(self, name: str) -> AbstractContextManager[object]:
        """The lock ``name`` of decisions replicas take one at a time (placing jobs, planning deploys)."""
        return self.db.exclusive(name) if self.db is not None else nullcontext()

    def command_journal(self) -> NodeStore | None:
        """Where one core journals its nodes' command queues (its SQLite file); None for replicas (their
        registry is shared) and for a core that keeps nothing."""
        return NodeStore(self.db) if self.db is not None and not self.shared else None

    def close(self) -> None:
        if self.db is not None:
            self.db.close()


def open_db(path: Path, legacy_jobs: Path | None = None) -> SqliteDb:
    """The core's SQLite file at ``path``, migrated to :data:`SCHEMA_VERSION`."""
    return SqliteDb(path, migrations(legacy_jobs), label=LABEL)


def open_pg(url: str) -> PgDb:
    """The core's PostgreSQL database at ``url``, migrated to :data:`PG_SCHEMA_VERSION`; StartupError (naming
    the host, never the password) when it cannot be reached."""
    return PgDb(url, migrations(dialect="postgresql"), label=LABEL)


def open_stores(state_db: str, store_dir: Path) -> CoreStores:
    """``:memory:`` → nothing kept; ``postgresql://…`` → that database; empty → ``core.sqlite`` in the store
    dir; else that file."""
    if state_db == ":memory:":
        return CoreStores(MemoryState(), MemoryJobStore(), MemoryRevocations())
    db: Database
    if is_pg_url(state_db):
        db = open_pg(state_db)
    else:
        db = open_db(Path(state_db).expanduser() if state_db else store_dir / STATE_FILE, store_dir / LEGACY_JOBS_DIR)
    return CoreStores(SqlState(db), SqlJobStore(db), SqlRevocations(db), db)
