"""The edge's location knowledge base: local venues and facilities per cell, from a TOML file.

File format (see examples/knowledge.toml)::

    [cells.cell-a1]
    area = "Harbour district"
    facts = [
      "Pier 3 ferry terminal: ferries to the islands every 30 minutes",
      "...",
    ]
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from netgpt.errors import StartupError

_WORD = re.compile(r"[a-z0-9]+")
_STOPWORDS = frozenset("a an and are at for from how i in is it me my near of on the to what where which with".split())


@dataclass(frozen=True)
class CellKnowledge:
    cell_id: str
    area: str
    facts: tuple[str, ...]


class KnowledgeBase:
    def __init__(self, cells: dict[str, CellKnowledge]) -> None:
        self.cells = cells

    @classmethod
    def load(cls, path: Path) -> KnowledgeBase:
        """Parse the TOML file; any problem is a one-line ModelLoadError for the operator."""
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise StartupError(f"knowledge base {path}: {exc}") from exc
        cells: dict[str, CellKnowledge] = {}
        for cell_id, entry in data.get("cells", {}).items():
            facts = entry.get("facts", []) if isinstance(entry, dict) else None
            if not isinstance(facts, list) or not all(isinstance(f, str) for f in facts):
                raise StartupError(f"knowledge base {path}: cells.{cell_id}.facts must be a list of strings")
            cells[cell_id] = CellKnowledge(cell_id, str(entry.get("area", cell_id)), tuple(facts))
        return cls(cells)

    def area(self, cell_id: str) -> str:
        entry = self.cells.get(cell_id)
        return entry.area if entry else ""

    def facts_for(self, cell_id: str, prompt: str, limit: int = 3) -> list[str]:
        """The cell's facts that share the most words with the prompt (ties keep file order)."""
        entry = self.cells.get(cell_id)
        if entry is None:
            return []
        words = _words(prompt)
        scored = [(len(words & _words(fact)), -i, fact) for i, fact in enumerate(entry.facts)]
        scored.sort(reverse=True)
        return [fact for score, _, fact in scored[:limit] if score > 0] or list(entry.facts[:1])


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS}
