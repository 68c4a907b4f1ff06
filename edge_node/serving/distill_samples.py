"""The edge learns from the cloud: the cloud's answers to requests the edge forwarded, kept as distillation samples.

Off unless the operator turns it on (edge setting ``distill_samples``). What is kept, per forwarded request the
cloud answered in full (a new call: cached and shared answers repeat a prompt already kept):

- the comprehensive prompt exactly as sent, which is desensitised text: a request whose workflow ran without the
  desensitise step (a ``verbatim_workflows`` exemption) is never kept;
- the cloud's final answer, the cell, and the cloud regions the cell's data may go to (the residency rules at
  the time: ``None`` = any region). :meth:`DistillSamples.export` writes only the samples whose rules allow
  the region the dataset goes to, so a cell whose data must stay in a region stays out of any other;
- the pseudonymous UE id, only so that the user's erasure (``DeleteProfile``) removes their samples. It is
  never exported.

The file runs with ``secure_delete`` (erased rows are zeroed, as in the profile store; an erasure also
checkpoints and truncates the write-ahead log, which would otherwise keep the rows as written), holds at most
``max_samples`` (the oldest go first), and is read by ``netgpt data distill export`` while the edge runs (WAL).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from netgpt.sqlite_db import Migration, SqliteDb

log = structlog.get_logger(__name__)

FORMAT = "netgpt-distill/1"  # meta.source of every exported line
DEFAULT_MAX_SAMPLES = 10_000


def _create(db: Any) -> dict[str, int]:
    db.execute("CREATE TABLE distill_samples (id INTEGER PRIMARY KEY AUTOINCREMENT, kept_at REAL NOT NULL, "
               "owner TEXT NOT NULL, cell_id TEXT NOT NULL, allowed_regions TEXT, prompt TEXT NOT NULL, "
               "completion TEXT NOT NULL, cloud_model TEXT NOT NULL)")
    db.execute("CREATE INDEX distill_samples_owner ON distill_samples (owner)")
    return {}


MIGRATIONS = (Migration("distill samples", _create),)


@dataclass(frozen=True)
class Sample:
    owner: str  # the UE id the request came from (for erasure only)
    cell_id: str
    allowed_regions: frozenset[str] | None  # cloud regions the cell's data may go to; None: any
    prompt: str  # the comprehensive prompt as forwarded (desensitised)
    completion: str  # the cloud's final answer
    cloud_model: str = ""

    def allows(self, region: str | None) -> bool:
        """Whether the sample may go to a dataset in ``region`` (None: a region not known, so only unrestricted
        samples)."""
        if self.allowed_regions is None:
            return True
        return region is not None and region in self.allowed_regions

    def row(self) -> dict[str, Any]:
        """The trainer's line (``netgpt.training.dataset``): the completion after the prompt, with the leading
        space the edge's answers start with; no UE id."""
        return {"prompt": self.prompt, "completion": " " + self.completion.strip(),
                "meta": {"source": FORMAT, "kind": "answer", "cell": self.cell_id, "cloud_model": self.cloud_model}}


class DistillSamples:
    """The edge's distillation samples in one SQLite file (``:memory:`` for tests)."""

    def __init__(self, path: str, max_samples: int = DEFAULT_MAX_SAMPLES) -> None:
        self._db = SqliteDb(Path(path), MIGRATIONS, "distillation samples")
        self.max_samples = max_samples

    def keep(self, sample: Sample) -> bool:
        """Store ``sample`` (False for an empty answer); the oldest samples beyond ``max_samples`` are erased."""
        if not sample.completion.strip() or self.max_samples <= 0:
            return False
        regions = None if sample.allowed_regions is None else json.dumps(sorted(sample.allowed_regions))
        try:
            with self._db.transaction() as db:
                db.execute("INSERT INTO distill_samples (kept_at, owner, cell_id, allowed_regions, prompt, "
                           "completion, cloud_model) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (time.time(), sample.owner, sample.cell_id, regions, sample.prompt, sample.completion,
                            sample.cloud_model))
                db.execute("DELETE FROM distill_samples WHERE id NOT IN "
                           "(SELECT id FROM distill_samples ORDER BY id DESC LIMIT ?)", (self.max_samples,))
        except sqlite3.Error as exc:  # a full disk must not fail the user's request: the sample is lost, logged
            log.warning("distill.keep_failed", error=str(exc))
            return False
        return True

    def forget(self, owner: str) -> int:
        """Erase ``owner``'s samples; how many there were."""
        if not owner:
            return 0
        with self._db.transaction() as db:
            erased = int(db.execute("DELETE FROM distill_samples WHERE owner = ?", (owner,)).rowcount)
        if erased:  # the write-ahead log still holds the rows as they were: fold it into the file and truncate it
            self._db.query("PRAGMA wal_checkpoint(TRUNCATE)")
        return erased

    def __len__(self) -> int:
        return int(self._db.query("SELECT COUNT(*) FROM distill_samples")[0][0])

    def samples(self) -> Iterator[Sample]:
        """Every sample, oldest first."""
        for owner, cell_id, regions, prompt, completion, model in self._db.query(
                "SELECT owner, cell_id, allowed_regions, prompt, completion, cloud_model FROM distill_samples "
                "ORDER BY id"):
            allowed = None if regions is None else frozenset(json.loads(regions))
            yield Sample(owner, cell_id, allowed, prompt, completion, model)

    def rows(self, region: str | None = None) -> list[dict[str, Any]]:
        """The training lines of the samples that may go to ``region``, one per prompt (its latest answer)."""
        latest = {s.prompt: s for s in self.samples() if s.allows(region)}
        return [s.row() for s in latest.values()]

    def export(self, out: Path, region: str | None = None) -> int:
        """Write :meth:`rows` as JSONL to ``out``; how many lines."""
        rows = self.rows(region)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        log.info("distill.exported", out=str(out), lines=len(rows), region=region or "")
        return len(rows)

    def close(self) -> None:
        self._db.close()
