"""The questions routing data is collected on, by split: ``train`` (the development set plus seeded
self-instruct phrasings asked in real cells) trains the router and picks its threshold; ``heldout``
(``heldout.py``) only measures the frontier."""

from __future__ import annotations

import json
import random
from importlib import resources

from tasks.prompt_completion.devset import DEV
from tasks.prompt_completion.heldout import HELD_OUT, HeldOut
from tasks.prompt_completion.synth import real_cells
from tasks.prompt_completion.templates import NEEDS

TRAIN, HELDOUT = "train", "heldout"
SEED = 2026
PHRASINGS = 80  # self-instruct phrasings added to the development set's 34 questions


def phrasing_questions(count: int = PHRASINGS, seed: int = SEED) -> list[HeldOut]:
    """``count`` self-instruct phrasings (not naming a venue) of needs a real cell can meet, each asked in one
    such cell (seeded), with every venue of that cell that fits the need as the answer key."""
    text = resources.files("tasks.prompt_completion").joinpath("data/self_instruct_phrasings.jsonl").read_text("utf-8")
    needs = {need.name: need for need in NEEDS}
    fitting: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    for cell_id, (_, venues) in sorted(real_cells().items()):
        for name, need in needs.items():
            if names := tuple(v.name for v in venues if need.fits(v)):
                fitting.setdefault(name, []).append((cell_id, names))
    records = [r for r in map(json.loads, text.splitlines()) if not r["named"] and r["need"] in fitting]
    rng = random.Random(seed)
    chosen = rng.sample(records, min(count, len(records)))
    questions = []
    for record in chosen:
        cell_id, expected = rng.choice(fitting[record["need"]])
        questions.append(HeldOut(record["text"], cell_id, expected))
    return questions


def questions_by_split(phrasings: int = PHRASINGS, limit: int = 0) -> dict[str, list[HeldOut]]:
    """``limit`` > 0: only the first that many of each split (a quick look, not a figure)."""
    splits = {TRAIN: [*DEV, *phrasing_questions(phrasings)], HELDOUT: list(HELD_OUT)}
    return {name: qs[:limit] if limit > 0 else qs for name, qs in splits.items()}
