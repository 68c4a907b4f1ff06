"""User profiles at the edge (SQLite): pseudonymous user id → preferences and recent prompts.

Durable by default (a file), because accepted profile updates must survive a restart.
Only preferences are ever written into a comprehensive prompt; history stays here.

Data policy: everything stored is desensitised first (preferences and prompts), whatever
the caller already did. Retention: at most ``history_size`` recent prompts per user, none
older than ``retention_s``, and a profile not updated nor used for ``retention_s`` is
erased whole; expired rows are invisible at once and deleted on the next write, when the
store opens, and by :class:`RetentionSweep` on an idle edge. Deletion really deletes:
``secure_delete`` zeroes the freed bytes in the database file.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from edge_node.serving.desensitise import desensitise
from netgpt.errors import InvalidArgument, NotFound
from netgpt.tasks import cancel_and_wait

MAX_PREFERENCES = 16
MAX_PREFERENCE_CHARS = 120
HISTORY_LENGTH = 10
RETENTION_S = 30 * 24 * 3600.0
MAX_SWEEP_INTERVAL_S = 3600.0
SCHEMA_VERSION = 1  # 1: prompts in their own table, desensitised; 0: a JSON "history" column of raw prompts

log = structlog.get_logger(__name__)


@dataclass
class Profile:
    user_id: str
    preferences: list[str] = field(default_factory=list)
    recent_prompts: list[str] = field(default_factory=list)  # newest first
    updated_at: float = 0.0


@dataclass(frozen=True)
class ErasedProfile:
    profile: bool  # whether a profile existed
    prompts: int


class ProfileStore:
    def __init__(self, db_path: str = ":memory:", history_size: int = HISTORY_LENGTH,
                 retention_s: float = RETENTION_S, clock: Callable[[], float] = time.time) -> None:
        """``history_size``: recent prompts kept per user (0: none); ``retention_s``: 0 keeps them for ever."""
        if history_size < 0 or retention_s < 0:
            raise ValueError("history_size and retention_s must be >= 0")
        self.history_size = history_size
        self.retention_s = retention_s
        self._clock = clock
        self._db = sqlite3.connect(db_path, check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock, self._db:
            self._db.execute("PRAGMA secure_delete = ON")
            self._db.execute("CREATE TABLE IF NOT EXISTS profiles (user_id TEXT PRIMARY KEY, "
                             "preferences TEXT NOT NULL, history TEXT NOT NULL, updated_at REAL NOT NULL)")
            self._db.execute("CREATE TABLE IF NOT EXISTS prompts (user_id TEXT NOT NULL, prompt TEXT NOT NULL, "
                             "at REAL NOT NULL)")
            self._db.execute("CREATE INDEX IF NOT EXISTS prompts_by_user ON prompts (user_id, at)")
            self._db.execute("CREATE INDEX IF NOT EXISTS prompts_by_age ON prompts (at)")
            self._db.execute("CREATE INDEX IF NOT EXISTS profiles_by_age ON profiles (updated_at)")
            if self._db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                self._migrate()
            self._purge()

    def get(self, user_id: str) -> Profile:
        _check_id(user_id)
        profile = self.find(user_id)
        if profile is None:
            raise NotFound(f"no profile for user {user_id!r}")
        return profile

    def find(self, user_id: str) -> Profile | None:
        """The user's profile, None when there is none or it expired."""
        cutoff = self._cutoff()
        with self._lock:
            row = self._db.execute("SELECT preferences, updated_at FROM profiles WHERE user_id = ? AND updated_at >= ?",
                                   (user_id, cutoff)).fetchone()
            if row is None:
                return None
            prompts = self._db.execute("SELECT prompt FROM prompts WHERE user_id = ? AND at >= ? "
                                       "ORDER BY at DESC, rowid DESC LIMIT ?",
                                       (user_id, cutoff, self.history_size)).fetchall()
        return Profile(user_id, json.loads(row[0]), [p for (p,) in prompts], row[1])

    def update(self, user_id: str, preferences: list[str], merge: bool) -> Profile:
        _check_id(user_id)
        cleaned = [p.strip() for p in preferences if p.strip()]
        for preference in cleaned:
            if len(preference) > MAX_PREFERENCE_CHARS:
                raise InvalidArgument(f"a preference is {len(preference)} characters; the limit is "
                                      f"{MAX_PREFERENCE_CHARS}")
        cleaned = [desensitise(p).text for p in cleaned]
        profile = self.find(user_id) or Profile(user_id)
        merged = profile.preferences + [p for p in cleaned if p not in profile.preferences] if merge else cleaned
        if len(merged) > MAX_PREFERENCES:
            raise InvalidArgument(f"a profile holds at most {MAX_PREFERENCES} preferences, this would be {len(merged)}")
        profile.preferences = list(dict.fromkeys(merged))
        profile.updated_at = self._clock()
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO profiles VALUES (?, ?, '[]', ?)",
                             (user_id, json.dumps(profile.preferences), profile.updated_at))
            self._purge()
        return profile

    def record_prompt(self, user_id: str, prompt: str) -> None:
        """Remember a concise prompt, desensitised, in an existing profile (users without one are not tracked)."""
        if self.find(user_id) is None:
            return
        now = self._clock()
        with self._lock, self._db:
            self._db.execute("UPDATE profiles SET updated_at = ? WHERE user_id = ?", (now, user_id))
            if self.history_size:
                self._db.execute("INSERT INTO prompts VALUES (?, ?, ?)", (user_id, desensitise(prompt).text, now))
            self._db.execute("DELETE FROM prompts WHERE user_id = ? AND rowid NOT IN (SELECT rowid FROM prompts "
                             "WHERE user_id = ? ORDER BY at DESC, rowid DESC LIMIT ?)",
                             (user_id, user_id, self.history_size))
            self._purge()

    def delete(self, user_id: str) -> ErasedProfile:
        """Erase the user's profile and prompts (expired ones too); what was there."""
        _check_id(user_id)
        with self._lock, self._db:
            prompts = self._db.execute("DELETE FROM prompts WHERE user_id = ?", (user_id,)).rowcount
            profile = self._db.execute("DELETE FROM profiles WHERE user_id = ?", (user_id,)).rowcount
        return ErasedProfile(profile=bool(profile), prompts=prompts)

    def purge_expired(self) -> int:
        """Delete what is past retention now; how many rows went."""
        with self._lock, self._db:
            return self._purge()

    def _cutoff(self) -> float:
        return self._clock() - self.retention_s if self.retention_s else float("-inf")

    def _purge(self) -> int:
        """Delete expired prompts and profiles (caller holds the lock, inside a transaction)."""
        if not self.retention_s:
            return 0
        cutoff = self._cutoff()
        expired = self._db.execute("DELETE FROM profiles WHERE updated_at < ?", (cutoff,)).rowcount
        # a prompt is never newer than its profile's updated_at, so an expired profile's prompts go here too
        return expired + self._db.execute("DELETE FROM prompts WHERE at < ?", (cutoff,)).rowcount

    def _migrate(self) -> None:
        """Schema 0 → 1: move JSON histories into ``prompts`` and desensitise everything stored."""
        rows = self._db.execute("SELECT user_id, preferences, history, updated_at FROM profiles").fetchall()
        for user_id, preferences, history, updated_at in rows:
            kept = [desensitise(p).text for p in json.loads(preferences)]
            prompts = json.loads(history)
            self._db.executemany("INSERT INTO prompts VALUES (?, ?, ?)",
                                 [(user_id, desensitise(p).text, updated_at - i * 1e-3) for i, p in enumerate(prompts)])
            self._db.execute("UPDATE profiles SET preferences = ?, history = '[]' WHERE user_id = ?",
                             (json.dumps(list(dict.fromkeys(kept))), user_id))
        self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


class RetentionSweep:
    """Purges expired profile data on a timer (a tenth of the retention period, at most hourly)."""

    def __init__(self, store: ProfileStore, interval_s: float | None = None) -> None:
        self.store = store
        self.interval_s = interval_s or min(MAX_SWEEP_INTERVAL_S, max(1.0, store.retention_s / 10))
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.store.retention_s and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            purged = self.store.purge_expired()
            if purged:
                log.info("profiles.purged", rows=purged)

    async def close(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None


def _check_id(user_id: str) -> None:
    if not user_id or len(user_id) > 128:
        raise InvalidArgument("user_id is required (at most 128 characters)")
