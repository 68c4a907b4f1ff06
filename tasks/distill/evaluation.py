"""How a round's edge is measured: its own answers to a split's questions, next to a fixed cloud's, and the
deployment gate that decides whether a retrained edge replaces the one serving.

- Splits: ``heldout`` (the 71 held-out questions: the figures) and ``dev`` (the router's 114 training questions:
  the development set's 34 and 80 self-instruct phrasings in real cells: choosing settings, and the gate).
- The cloud side is fixed: the same cloud's answers to the same questions, collected by ``netgpt eval routing
  --collect`` (``REFERENCE``); the cloud does not change between rounds.
- The figures: edge-only and always-cloud quality, and the most requests the edge can end by today's
  log-probability threshold (swept on the split itself: an upper bound for that rule) at no loss against
  always-cloud and at 95 % of it; the shipped learned router's share and quality at its threshold.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from appkit.all_in_one import Cluster
from edge_node.serving.learned_router import LearnedRouter
from netgpt.v1 import user_plane_pb2 as up_pb2
from tasks.prompt_completion.evaluate import ask_via_edge, cell_venues, score_answer
from tasks.prompt_completion.heldout import HELD_OUT, HeldOut
from tasks.routing.collect import Answer, Collected, Record, features_of
from tasks.routing.frontier import TARGET, best_at, confidence, routed, sweep
from tasks.routing.questions import HELDOUT, TRAIN, questions_by_split

T = TypeVar("T")
R = TypeVar("R")

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "tasks" / "prompt_completion" / "data" / "routing_data_pretrained.json"
DEV = "dev"
ROUTER_THRESHOLD = 0.5  # the shipped learned router's recommended threshold


def evaluation_questions(split: str) -> list[HeldOut]:
    if split not in (HELDOUT, DEV):
        raise ValueError(f"split must be {HELDOUT!r} or {DEV!r}, not {split!r}")
    return list(HELD_OUT) if split == HELDOUT else questions_by_split()[TRAIN]


def reference_cloud(split: str, path: Path = REFERENCE) -> dict[str, Answer]:
    """The cloud's answers to the split's questions (the starter edge's prompts; the development questions are
    in the collected file's ``train`` split)."""
    wanted = {q.question for q in evaluation_questions(split)}
    collected = Collected.read(path)
    return {r.question: r.cloud for name in (HELDOUT, TRAIN) for r in collected.split(name) if r.question in wanted}


async def gathered(items: Sequence[T], ask: Callable[[T], Awaitable[R]], concurrency: int) -> list[R]:
    """``ask`` for every item, ``concurrency`` at a time (the cloud batches concurrent requests), in order."""
    gate = asyncio.Semaphore(concurrency)

    async def one(item: T) -> R:
        async with gate:
            return await ask(item)

    return list(await asyncio.gather(*(one(item) for item in items)))


async def edge_record(cluster: Cluster, split: str, q: HeldOut, cloud: Mapping[str, Answer],
                      venues: Mapping[str, Sequence[str]], max_new_tokens: int) -> Record:
    """The edge's own answer to ``q`` with the routing features it computed (the cluster's learned router at
    threshold 0 keeps every request at the edge and logs them), next to the reference cloud answer; ``venues``:
    every venue of each cell (:func:`cell_venues`)."""
    others = tuple(venues.get(q.cell_id, ()))
    prompt, summary = await ask_via_edge(cluster, q, up_pb2.ROUTE_PREFERENCE_UNSPECIFIED, max_new_tokens)
    if summary.bytes_edge_to_cloud:
        raise RuntimeError(f"{q.question!r} went to the cloud: {summary.reason_detail}")
    return Record(split, q.question, q.cell_id, q.expected, others, tuple(prompt.knowledge_used),
                  features_of(summary), Answer(summary.text, score_answer(summary.text, q.expected, others),
                                               summary.latency.total_ms), cloud[q.question])


def figures(records: list[Record], router: LearnedRouter) -> dict[str, float]:
    """One edge's figures on a split (with the cloud's answers to its prompts)."""
    edge = routed(records, [True] * len(records), "always edge")
    cloud = routed(records, [False] * len(records), "always cloud")
    points = sweep(records, [confidence(r) for r in records], "log-prob")
    equal, near = best_at(points, cloud.quality), best_at(points, TARGET * cloud.quality)
    learned = routed(records, [router.p_good(r.features) >= ROUTER_THRESHOLD for r in records], "learned")
    return {"edge_quality": edge.quality, "cloud_quality": cloud.quality, "edge_share_equal": equal.edge_share,
            "quality_equal": equal.quality, "edge_share_95": near.edge_share,
            "router_edge_share": learned.edge_share, "router_quality": learned.quality}


async def evaluate(cluster: Cluster, split: str, max_new_tokens: int, concurrency: int,
                   limit: int = 0) -> list[Record]:
    """The cluster's edge on ``split``, a record per question (``limit`` > 0: its first questions only, a smoke
    test)."""
    cloud, venues = reference_cloud(split), cell_venues()
    asked = evaluation_questions(split)
    asked = asked[:limit or len(asked)]
    return await gathered(asked, lambda q: edge_record(cluster, split, q, cloud, venues, max_new_tokens),
                          concurrency)


def passes_gate(candidate: Mapping[str, float], serving: Mapping[str, float]) -> bool:
    """A retrained edge replaces the serving one only when it is no worse on the development questions: its
    share at equal quality and its own quality both at least the serving edge's (what an operator's canary on
    questions it holds the answers to would check; the held-out questions never decide)."""
    return (candidate["edge_share_equal"] >= serving["edge_share_equal"]
            and candidate["edge_quality"] >= serving["edge_quality"])
