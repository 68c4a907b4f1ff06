"""Where "the edge's answer was good enough" comes from, per collected record.

- ``key``: the evaluation's answer key (the existing scorer: a fitting venue and no other of the cell).
- ``rule``: what a deployment can check without a key: the edge's answer names a venue the comprehensive
  prompt listed, and no other venue of the cell. The edge has both the listed facts and its cells'
  venues, so it can label every answer it gives, at no cost.
- A deployment could also ask the cloud model to judge the edge's answer (one more cloud call per
  sampled request); not implemented here.
"""

from __future__ import annotations

from collections.abc import Callable

from edge_node.serving.learned_router import venue_of
from tasks.prompt_completion.evaluate import score_answer
from tasks.routing.collect import Record


def by_key(record: Record) -> bool:
    return record.edge.ok


def by_rule(record: Record) -> bool:
    listed = tuple(venue_of(fact) for fact in record.facts)
    return score_answer(record.edge.text, listed, record.cell_venues)


LABELS: dict[str, Callable[[Record], bool]] = {"key": by_key, "rule": by_rule}
