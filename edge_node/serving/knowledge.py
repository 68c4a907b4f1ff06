"""The edge's location knowledge: venues, facilities and local facts per cell, in SQLite.

Loaded from a TOML file (format below; example: netgpt/assets/knowledge.toml) into
SQLite with an FTS5 index (Porter-stemmed: "burger" finds "burgers"), and queried when the
edge builds a comprehensive prompt: only the UE's cell, ranked by BM25 over the prompt's
words plus the categories those words imply ("eat" → restaurant, cafe), keeping the venues
whose relevance is at least ``min_share`` of the best one's (a weak match is a distractor
for the small models that read the list, not a help)::

    [cells.cell-harbour-1]
    area = "Harbour district"

    [[cells.cell-harbour-1.venues]]
    name = "Harbour Fish Market"
    category = "restaurant"          # restaurant, cafe, hotel, transport, health, culture, ...
    description = "seafood restaurant, table bookings by phone"
    hours = "11:00-22:00"            # optional
    keywords = ["oysters", "lobster"]  # optional: more words it is found by (never shown to a model)

    # plain facts are accepted too:  facts = ["...", "..."]

``keywords`` widen what a venue is found by, the way document expansion does for passages: the words
people use for it that its description does not (``make venue-keywords`` has the pretrained base write
them: :mod:`tasks.prompt_completion.venue_terms`).
"""

from __future__ import annotations

import re
import sqlite3
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netgpt.config import EdgeConfig
from netgpt.errors import StartupError

_WORD = re.compile(r"[a-z0-9]+")
SCHEMA_VERSION = 3  # 2: Porter-stemmed index, 3: keywords; a knowledge_db file of another version is rebuilt
DEFAULT_MIN_SHARE = EdgeConfig.fact_min_share  # one default, the edge setting's
_STOPWORDS = frozenset(
    "a an and are at be can do does for from get how i in is it me my near of on or the to what when where "
    "which who with you your there this that need want find looking look like please some any".split()
)
# Words in a prompt that point at a category of venue.
CATEGORY_HINTS: dict[str, tuple[str, ...]] = {
    "restaurant": ("eat", "food", "dinner", "lunch", "restaurant", "seafood", "hungry", "meal"),
    "cafe": ("coffee", "cafe", "breakfast", "tea", "bakery"),
    "hotel": ("hotel", "sleep", "stay", "room", "night"),
    "transport": ("train", "bus", "ferry", "airport", "taxi", "bike", "get", "travel", "station", "parking", "car"),
    "health": ("pharmacy", "doctor", "hospital", "medicine", "sick"),
    "culture": ("museum", "library", "gallery", "concert", "study"),
    "sport": ("sport", "gym", "badminton", "swim", "run"),
    "shop": ("shop", "buy", "market", "groceries", "store"),
}


@dataclass(frozen=True)
class Venue:
    cell_id: str
    name: str
    category: str
    description: str
    hours: str = ""
    keywords: tuple[str, ...] = ()

    def as_fact(self) -> str:
        hours = f", open {self.hours}" if self.hours else ""
        return f"{self.name} ({self.category}): {self.description}{hours}"


def fact_name(fact: str) -> str:
    """The venue name a fact line (:meth:`Venue.as_fact`) begins with."""
    head = fact.split("): ", 1)[0]
    return head.rsplit(" (", 1)[0] if " (" in head else head


@dataclass(frozen=True)
class Retrieval:
    """The venues a prompt retrieves; ``decisive``: the knowledge base alone settles what the user wants —
    one venue matched, every other below ``min_share`` of its relevance, and the prompt names its category
    (or a word implying it) or one of its keywords. The prompt then lists that venue alone, and the edge skips
    its model's reading of the intent (:mod:`edge_node.serving.personalise`)."""

    venues: list[Venue]
    decisive: bool


class KnowledgeBase:
    def __init__(self, db: sqlite3.Connection, min_share: float = DEFAULT_MIN_SHARE) -> None:
        if not 0.0 <= min_share <= 1.0:
            raise StartupError(f"fact_min_share must be in [0, 1], got {min_share:g}")
        self._db = db
        self.min_share = min_share

    @classmethod
    def load(cls, path: Path, db_path: str = ":memory:", min_share: float = DEFAULT_MIN_SHARE) -> KnowledgeBase:
        """Parse the TOML file into SQLite (``db_path``: a file to keep it, default in memory)."""
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise StartupError(f"knowledge base {path}: {exc}") from exc
        kb = cls(_open(db_path), min_share)
        kb.replace(parse_cells(data, str(path)))
        return kb

    def replace(self, cells: dict[str, tuple[str, list[Venue]]]) -> None:
        with self._db:
            self._db.execute("DELETE FROM cells")
            self._db.execute("DELETE FROM venues")
            for cell_id, (area, venues) in cells.items():
                self._db.execute("INSERT INTO cells VALUES (?, ?)", (cell_id, area))
                self._db.executemany(
                    "INSERT INTO venues (cell_id, name, category, description, hours, keywords) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [(v.cell_id, v.name, v.category, v.description, v.hours, " ".join(v.keywords)) for v in venues])

    @property
    def cells(self) -> list[str]:
        return [row[0] for row in self._db.execute("SELECT cell_id FROM cells ORDER BY cell_id")]

    def area(self, cell_id: str) -> str:
        row = self._db.execute("SELECT area FROM cells WHERE cell_id = ?", (cell_id,)).fetchone()
        return row[0] if row else ""

    def venues(self, cell_id: str, prompt: str, limit: int = 3) -> list[Venue]:
        """The cell's most relevant venues for the prompt, at most ``limit``, none below ``min_share`` of
        the best one's relevance; the cell's first venue if nothing matches."""
        return self.retrieve(cell_id, prompt, limit).venues

    def retrieve(self, cell_id: str, prompt: str, limit: int = 3) -> Retrieval:
        """:meth:`venues` and whether they settle what the user wants (:attr:`Retrieval.decisive`)."""
        terms = query_terms(prompt)
        rows: list[tuple[Any, ...]] = []  # sqlite3 rows
        if terms:
            match = " OR ".join(f'"{t}"' for t in terms)
            rank = "bm25(venues_fts)"  # keywords weigh as much as the venue's own words: the development set chose it
            rows = self._db.execute(
                f"SELECT {_COLUMNS}, {rank} FROM venues_fts f JOIN venues v ON v.id = f.rowid "
                f"WHERE venues_fts MATCH ? AND v.cell_id = ? ORDER BY {rank}, v.id LIMIT ?",
                (match, cell_id, max(limit, 2))).fetchall()  # the runner-up, even for one, tells the margin
        if rows:  # bm25() is negative, more so the better the match
            best = rows[0][-1]
            kept = [_venue_of(row[:-1]) for row in rows[:limit] if row[-1] <= self.min_share * best]
            alone = len(rows) == 1 or rows[1][-1] > self.min_share * best
            return Retrieval(kept, alone and bool(kept) and _named(kept[0], terms))
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM venues v WHERE cell_id = ? ORDER BY id LIMIT 1",
                                (cell_id,)).fetchall()
        return Retrieval([_venue_of(row) for row in rows], False)

    def facts_for(self, cell_id: str, prompt: str, limit: int = 3) -> list[str]:
        return [venue.as_fact() for venue in self.venues(cell_id, prompt, limit)]


_COLUMNS = "v.cell_id, v.name, v.category, v.description, v.hours, v.keywords"


def _venue_of(row: tuple[Any, ...]) -> Venue:
    cell_id, name, category, description, hours, keywords = row
    return Venue(cell_id, name, category, description, hours, tuple(keywords.split()))


def _named(venue: Venue, terms: list[str]) -> bool:
    return venue.category in terms or not set(venue.keywords).isdisjoint(terms)


def query_terms(prompt: str) -> list[str]:
    words = [w for w in _WORD.findall(prompt.lower()) if w not in _STOPWORDS]
    categories = [c for c, hints in CATEGORY_HINTS.items() if any(w in hints for w in words)]
    return sorted(set(words) | set(categories))


def parse_cells(data: dict[str, Any], source: str) -> dict[str, tuple[str, list[Venue]]]:
    cells: dict[str, tuple[str, list[Venue]]] = {}
    for cell_id, entry in data.get("cells", {}).items():
        if not isinstance(entry, dict):
            raise StartupError(f"knowledge base {source}: cells.{cell_id} must be a table")
        venues = [_venue(cell_id, v, source) for v in entry.get("venues", [])]
        facts = entry.get("facts", [])
        if not isinstance(facts, list) or not all(isinstance(f, str) for f in facts):
            raise StartupError(f"knowledge base {source}: cells.{cell_id}.facts must be a list of strings")
        venues += [Venue(cell_id, fact.split(":")[0].strip(), "fact", fact) for fact in facts]
        cells[cell_id] = (str(entry.get("area", cell_id)), venues)
    return cells


def _venue(cell_id: str, raw: object, source: str) -> Venue:
    if not isinstance(raw, dict) or not all(isinstance(raw.get(k), str) and raw.get(k) for k in ("name", "category")):
        raise StartupError(f"knowledge base {source}: every venue in cells.{cell_id} needs a name and a category")
    keywords = raw.get("keywords", [])
    if not isinstance(keywords, list) or not all(isinstance(k, str) and _WORD.fullmatch(k.lower()) for k in keywords):
        raise StartupError(f"knowledge base {source}: keywords of {raw['name']!r} in cells.{cell_id} must be a list "
                           "of single words")
    return Venue(cell_id, raw["name"], raw["category"].lower(), str(raw.get("description", "")),
                 str(raw.get("hours", "")), tuple(k.lower() for k in keywords))


def _open(db_path: str) -> sqlite3.Connection:
    db = sqlite3.connect(db_path, check_same_thread=False)
    if db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:  # load() refills it anyway
        db.executescript("""
            DROP TRIGGER IF EXISTS venues_ai; DROP TRIGGER IF EXISTS venues_ad;
            DROP TABLE IF EXISTS venues_fts; DROP TABLE IF EXISTS venues; DROP TABLE IF EXISTS cells;
        """)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    db.executescript("""
        CREATE TABLE IF NOT EXISTS cells (cell_id TEXT PRIMARY KEY, area TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS venues (id INTEGER PRIMARY KEY, cell_id TEXT NOT NULL, name TEXT NOT NULL,
            category TEXT NOT NULL, description TEXT NOT NULL, hours TEXT NOT NULL, keywords TEXT NOT NULL);
        CREATE INDEX IF NOT EXISTS venues_by_cell ON venues (cell_id);
        CREATE VIRTUAL TABLE IF NOT EXISTS venues_fts USING fts5(name, category, description, keywords,
            content='venues', content_rowid='id', tokenize='porter unicode61');
        CREATE TRIGGER IF NOT EXISTS venues_ai AFTER INSERT ON venues BEGIN
            INSERT INTO venues_fts(rowid, name, category, description, keywords)
            VALUES (new.id, new.name, new.category, new.description, new.keywords);
        END;
        CREATE TRIGGER IF NOT EXISTS venues_ad AFTER DELETE ON venues BEGIN
            INSERT INTO venues_fts(venues_fts, rowid, name, category, description, keywords)
            VALUES ('delete', old.id, old.name, old.category, old.description, old.keywords);
        END;
    """)
    return db
