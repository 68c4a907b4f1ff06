"""User profiles at the edge (SQLite): pseudonymous user id → preferences and recent prompts.

Durable by default (a file), because accepted profile updates must survive a restart.
Only preferences are ever written into a comprehensive prompt; history stays here.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field

from netgpt.errors import InvalidArgument, NotFound

MAX_PREFERENCES = 16
MAX_PREFERENCE_CHARS = 120
HISTORY_LENGTH = 10


@dataclass
class Profile:
    user_id: str
    preferences: list[str] = field(default_factory=list)
    recent_prompts: list[str] = field(default_factory=list)
    updated_at: float = 0.0


class ProfileStore:
    def __init__(self, db_path: str = ":memory:") -> None:
        self._db = sqlite3.connect(db_path, check_same_thread=False)
        self._lock = threading.Lock()
        with self._db:
            self._db.execute("CREATE TABLE IF NOT EXISTS profiles (user_id TEXT PRIMARY KEY, "
                             "preferences TEXT NOT NULL, history TEXT NOT NULL, updated_at REAL NOT NULL)")

    def get(self, user_id: str) -> Profile:
        _check_id(user_id)
        profile = self.find(user_id)
        if profile is None:
            raise NotFound(f"no profile for user {user_id!r}")
        return profile

    def find(self, user_id: str) -> Profile | None:
        with self._lock:
            row = self._db.execute("SELECT preferences, history, updated_at FROM profiles WHERE user_id = ?",
                                   (user_id,)).fetchone()
        return Profile(user_id, json.loads(row[0]), json.loads(row[1]), row[2]) if row else None

    def update(self, user_id: str, preferences: list[str], merge: bool) -> Profile:
        _check_id(user_id)
        cleaned = [p.strip() for p in preferences if p.strip()]
        for preference in cleaned:
            if len(preference) > MAX_PREFERENCE_CHARS:
                raise InvalidArgument(f"a preference is {len(preference)} characters; the limit is "
                                      f"{MAX_PREFERENCE_CHARS}")
        profile = self.find(user_id) or Profile(user_id)
        merged = profile.preferences + [p for p in cleaned if p not in profile.preferences] if merge else cleaned
        if len(merged) > MAX_PREFERENCES:
            raise InvalidArgument(f"a profile holds at most {MAX_PREFERENCES} preferences, this would be {len(merged)}")
        profile.preferences = list(dict.fromkeys(merged))
        return self._save(profile)

    def record_prompt(self, user_id: str, prompt: str) -> None:
        """Remember a concise prompt in an existing profile (users without one are not tracked)."""
        profile = self.find(user_id)
        if profile is not None:
            profile.recent_prompts = [prompt, *profile.recent_prompts][:HISTORY_LENGTH]
            self._save(profile)

    def delete(self, user_id: str) -> None:
        _check_id(user_id)
        with self._lock, self._db:
            deleted = self._db.execute("DELETE FROM profiles WHERE user_id = ?", (user_id,)).rowcount
        if not deleted:
            raise NotFound(f"no profile for user {user_id!r}")

    def _save(self, profile: Profile) -> Profile:
        profile.updated_at = time.time()
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO profiles VALUES (?, ?, ?, ?)",
                             (profile.user_id, json.dumps(profile.preferences), json.dumps(profile.recent_prompts),
                              profile.updated_at))
        return profile


def _check_id(user_id: str) -> None:
    if not user_id or len(user_id) > 128:
        raise InvalidArgument("user_id is required (at most 128 characters)")
