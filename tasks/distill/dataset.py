"""The distillation dataset of one round: the edge's exported samples, kept only where the cloud's answer is
grounded, plus a replay share of the edge's own training data.

- **Grounded** (a rule a deployment can check on every sample, no answer key): the cloud's answer names a venue
  the comprehensive prompt listed and no other venue of the cell. A wrong cloud answer would teach the edge a
  wrong answer; this drops most of them.
- **The edge's own form** (``form="edge"``): the cloud answers in prose ("Try X: <description>, open ..."), the
  edge in its short form ("X, open 11:00-22:00."); a grounded answer is rewritten in the edge's form from the
  knowledge base the edge holds, so the edge learns the cloud's *choice* of venue (what the score and the user
  need), not a second answer style its 2.2M parameters then split between.
- **Replay**: fine-tuning a 2.2M-parameter model on a few dozen answers alone makes it forget the rest of its
  task (the intent lines are not in the samples at all), so each round mixes in lines of the edge's seeded
  training set (``tasks/prompt_completion/build.py``), ``replay`` of them per sample.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edge_node.serving.knowledge import Venue, fact_name
from tasks.prompt_completion.build import build_edge_dataset, venue_answer
from tasks.prompt_completion.evaluate import names_in, score_answer

REPLAY_SEED = 0  # the edge's dataset of `netgpt data build edge --seed 0`


def listed_venues(prompt: str) -> tuple[str, ...]:
    """The venues a comprehensive prompt lists (its ``- Name (category): ...`` lines)."""
    return tuple(fact_name(line[2:]) for line in prompt.splitlines() if line.startswith("- "))


def grounded(row: Mapping[str, Any], cell_venues: Mapping[str, Sequence[str]]) -> bool:
    """The cloud's answer names a listed venue and no other venue of the row's cell."""
    listed = listed_venues(str(row["prompt"]))
    others = cell_venues.get(str(row.get("meta", {}).get("cell", "")), ())
    return bool(listed) and score_answer(str(row["completion"]), listed, others)


def in_edge_form(row: Mapping[str, Any], venues: Sequence[Venue]) -> dict[str, Any] | None:
    """``row`` with the cloud's answer rewritten in the edge's answer form: the one listed venue it names, with
    the hours ``venues`` (the cell's knowledge) hold. None when it names no listed venue or more than one."""
    named = names_in(str(row["completion"]), listed_venues(str(row["prompt"])))
    venue = next((v for v in venues if v.name in named), None) if len(named) == 1 else None
    if venue is None:
        return None
    return {**row, "completion": venue_answer(venue), "meta": {**row.get("meta", {}), "form": "edge"}}


def read_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def replay_rows(count: int, seed: int = REPLAY_SEED) -> list[dict[str, Any]]:
    """``count`` lines of the edge's own seeded training set."""
    if count <= 0:
        return []
    with tempfile.TemporaryDirectory(prefix="netgpt-replay-") as folder:
        return read_rows(build_edge_dataset(Path(folder) / "edge.jsonl", seed, count))


def write_rows(rows: Sequence[Mapping[str, Any]], out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return out
