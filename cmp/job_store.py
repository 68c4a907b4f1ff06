"""Where the core keeps its fine-tuning jobs between restarts.

The compute plane owns the :class:`JobStore` protocol; it has two implementations, with the same
behaviour: :class:`MemoryJobStore` (unit tests, ``state_db = ":memory:"``) and
:class:`SqlJobStore` (a table of the core's database, SQLite or PostgreSQL, one committed transaction
per save, so a job the core acknowledged survives ``kill -9``). Each job is kept as its ``TrainingJob``
message. :func:`jobs_table` is the schema step that adds the table; on SQLite it also takes in the
jobs an older core kept as one ``<id>.pb`` file per job (the former ``FileJobStore``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import structlog

from cmp.convert import job_from_proto, job_to_proto
from cmp.records import Job
from netgpt.database import Database, Dialect, Migration, Tx, typed
from netgpt.v1 import training_pb2

log = structlog.get_logger(__name__)

TABLE = """CREATE TABLE IF NOT EXISTS training_jobs (
    job_id TEXT PRIMARY KEY,
    job    {blob} NOT NULL   -- netgpt.v1.TrainingJob, serialized
)"""
_SAVE = "INSERT INTO training_jobs (job_id, job) VALUES (?, ?) ON CONFLICT (job_id) DO UPDATE SET job = excluded.job"


class JobStore(Protocol):
    """Where jobs are kept between core restarts. Implementations copy what they are given."""

    def load(self) -> list[Job]:
        """Every saved job, by id."""
        ...

    def save(self, job: Job) -> None: ...


def _encode(job: Job) -> bytes:
    return job_to_proto(job).SerializeToString(deterministic=True)


def _decode(job_id: str, blob: bytes) -> Job | None:
    """The job, or None (logged) for bytes that do not parse: one bad job must not stop the core."""
    try:
        return job_from_proto(training_pb2.TrainingJob.FromString(blob))
    except Exception as exc:
        log.warning("training.job_unreadable", job_id=job_id, error=str(exc))
        return None


class MemoryJobStore:
    """Jobs live as long as this object (the core, when it is the core's); otherwise as :class:`SqlJobStore`."""

    def __init__(self) -> None:
        self._jobs: dict[str, bytes] = {}

    def load(self) -> list[Job]:
        return [job for job_id in sorted(self._jobs) if (job := _decode(job_id, self._jobs[job_id])) is not None]

    def save(self, job: Job) -> None:
        self._jobs[job.id] = _encode(job)


class SqlJobStore:
    """Jobs in the ``training_jobs`` table of the core's database (see :func:`jobs_table`)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def load(self) -> list[Job]:
        rows = self._db.query("SELECT job_id, job FROM training_jobs ORDER BY job_id")
        return [job for job_id, blob in rows if (job := _decode(str(job_id), bytes(blob))) is not None]

    def save(self, job: Job) -> None:
        with self._db.transaction() as db:
            db.execute(_SAVE, (job.id, _encode(job)))


def legacy_jobs(folder: Path) -> list[training_pb2.TrainingJob]:
    """The jobs an older core kept under ``folder``, one message per ``<id>.pb`` file, by file name;
    a file that does not parse (or names no job) is logged and left out, as that core did."""
    jobs = []
    for path in sorted(folder.glob("*.pb")):
        try:
            message = training_pb2.TrainingJob.FromString(path.read_bytes())
        except Exception as exc:
            log.warning("training.job_unreadable", path=str(path), error=str(exc))
            continue
        if not message.id:
            log.warning("training.job_unreadable", path=str(path), error="no job id")
            continue
        jobs.append(message)
    return jobs


def jobs_table(legacy_folder: Path | None, dialect: Dialect = "sqlite") -> Migration:
    """The schema step that adds ``training_jobs`` and fills it from ``legacy_folder`` (if given
    and there). The folder is left as it was: the database's version says the step ran."""

    def apply(db: Tx) -> dict[str, int]:
        db.execute(typed(TABLE, dialect))
        found = legacy_jobs(legacy_folder) if legacy_folder is not None and legacy_folder.is_dir() else []
        db.executemany(_SAVE, [(m.id, m.SerializeToString(deterministic=True)) for m in found])
        return {"jobs": len(found)}

    return Migration("training jobs (and the job files of an older core)", apply)


SqliteJobStore = SqlJobStore  # its name from when SQLite was the only database
