"""Where "the edge's answer was good enough" comes from, per collected record.

- ``key``: the evaluation's answer key (the existing scorer: a fitting venue and no other of the cell).
- ``rule``: what a deployment can check without a key: the edge's answer names a venue the comprehensive
  prompt listed, and no other venue of the cell. The edge has both the listed facts and its cells'
  venues, so it can label every answer it gives, at no cost.
- ``cloud``: the cloud model as the judge, the way RouteLLM labels with a strong model: the edge's answer is
  good when it names the same venue(s) of the cell as the cloud's answer to the same comprehensive prompt. A
  deployment has the cloud's answer for every request it forwards; a sampled request the edge ended costs one
  more cloud call. No answer key is read, so the labels carry the cloud's own mistakes.
"""

from __future__ import annotations

from collections.abc import Callable

from edge_node.serving.knowledge import fact_name
from tasks.prompt_completion.evaluate import names_in, score_answer
from tasks.routing.collect import Record


def by_key(record: Record) -> bool:
    return record.edge.ok


def by_rule(record: Record) -> bool:
    listed = tuple(fact_name(fact) for fact in record.facts)
    return score_answer(record.edge.text, listed, record.cell_venues)


def by_cloud(record: Record) -> bool:
    named = names_in(record.edge.text, record.cell_venues)
    return bool(named) and named == names_in(record.cloud.text, record.cell_venues)


LABELS: dict[str, Callable[[Record], bool]] = {"key": by_key, "rule": by_rule, "cloud": by_cloud}
