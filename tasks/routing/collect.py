"""Routing data collected as a deployment can: per question, the edge's answer and the cloud's answer to the
same comprehensive prompt, and the learned router's features as the edge computed them when it routed.

The edge runs the learned router in *shadow* mode (an untrained router: it scores and logs the features,
the rules still route), so the cloud request's summary carries the features in ``routing_inputs``;
the edge's own answer comes from the same question asked with route preference EDGE. Cell load and
cloud queue are constants here (an idle loopback cluster, no RAN reports): 0 for every record.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import structlog

from appkit.all_in_one import Cluster
from edge_node.serving.learned_router import FEATURES, LearnedRouter
from netgpt.v1 import user_plane_pb2 as up_pb2
from tasks.prompt_completion.evaluate import (
    MAX_NEW_TOKENS,
    ask_via_edge,
    cell_venues,
    evaluation_cluster,
    models_label,
    score_answer,
)
from tasks.prompt_completion.heldout import HeldOut

log = structlog.get_logger(__name__)
PROBE_TOKENS = 12  # the router's probe: enough greedy tokens for the edge's answer to name its venue
FORMAT = "netgpt-routing-data/1"


@dataclass(frozen=True)
class Answer:
    text: str
    ok: bool  # names a fitting venue and no other venue of the cell (the answer key's scorer)
    latency_ms: float
    bytes_edge_to_cloud: int = 0


@dataclass(frozen=True)
class Record:
    split: str
    question: str
    cell_id: str
    expected: tuple[str, ...]
    cell_venues: tuple[str, ...]  # every venue of the cell (the edge's knowledge base knows them)
    facts: tuple[str, ...]  # listed in the comprehensive prompt
    features: dict[str, float]
    edge: Answer
    cloud: Answer

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        return cls(data["split"], data["question"], data["cell_id"], tuple(data["expected"]),
                   tuple(data["cell_venues"]), tuple(data["facts"]), {k: float(v) for k, v in data["features"].items()},
                   Answer(**data["edge"]), Answer(**data["cloud"]))


@dataclass(frozen=True)
class Collected:
    models: str
    max_new_tokens: int
    probe_tokens: int
    records: tuple[Record, ...]

    def split(self, name: str) -> list[Record]:
        return [r for r in self.records if r.split == name]

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "models": self.models, "max_new_tokens": self.max_new_tokens,
                "probe_tokens": self.probe_tokens, "decoding": "greedy",
                "constants": {"cloud_queue": 0, "cell_load": 0.0},
                "records": [asdict(r) for r in self.records]}

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")

    @classmethod
    def read(cls, path: Path) -> Collected:
        try:
            data = json.loads(path.read_text("utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"routing data {path}: {e}") from e
        if data.get("format") != FORMAT:
            raise ValueError(f"routing data {path}: format {data.get('format')!r}, expected {FORMAT!r} "
                             "(write it with `netgpt eval routing --collect FILE`)")
        return cls(data["models"], data["max_new_tokens"], data["probe_tokens"],
                   tuple(Record.from_json(r) for r in data["records"]))


def features_of(summary: up_pb2.GenerationSummary) -> dict[str, float]:
    """The learned router's features the edge logged in a summary's routing inputs."""
    found = {name: float(summary.routing_inputs[f"router.{name}"]) for name in FEATURES
             if f"router.{name}" in summary.routing_inputs}
    if len(found) != len(FEATURES):
        raise RuntimeError(f"the edge logged no router features ({summary.reason_detail}); is its router in shadow "
                           "mode and the request routed by the policy (route preference unspecified, task chat)?")
    return found


def shadow_router_file(folder: Path) -> Path:
    """An untrained router's weights in ``folder``: an edge with ``router = "shadow"`` and these logs the features."""
    shadow = folder / "untrained_router.json"
    shadow.write_text(json.dumps(LearnedRouter.untrained(PROBE_TOKENS).to_json()), encoding="utf-8")
    return shadow


async def record_of(cluster: Cluster, split: str, q: HeldOut, others: tuple[str, ...], max_new_tokens: int) -> Record:
    """``q`` asked twice through a cluster whose edge runs a shadow router: the edge's answer, and the cloud's to
    the edge's comprehensive prompt with the features the edge logged; both scored."""
    _, edge = await ask_via_edge(cluster, q, up_pb2.ROUTE_PREFERENCE_EDGE, max_new_tokens)
    prompt, cloud = await ask_via_edge(cluster, q, up_pb2.ROUTE_PREFERENCE_UNSPECIFIED, max_new_tokens)
    if cloud.bytes_edge_to_cloud == 0:
        raise RuntimeError(f"{q.question!r} was not forwarded to the cloud: {cloud.reason_detail}")
    return Record(split, q.question, q.cell_id, q.expected, others, tuple(prompt.knowledge_used), features_of(cloud),
                  Answer(edge.text, score_answer(edge.text, q.expected, others), edge.latency.total_ms),
                  Answer(cloud.text, score_answer(cloud.text, q.expected, others), cloud.latency.total_ms,
                         cloud.bytes_edge_to_cloud))


def collect(questions: Mapping[str, Sequence[HeldOut]], edge_model: str, cloud_model: str, adapter: str = "",
            max_new_tokens: int = MAX_NEW_TOKENS, progress: Callable[[int], None] | None = None) -> Collected:
    return asyncio.run(collect_async(questions, edge_model, cloud_model, adapter, max_new_tokens, progress))


async def collect_async(questions: Mapping[str, Sequence[HeldOut]], edge_model: str, cloud_model: str,
                        adapter: str = "", max_new_tokens: int = MAX_NEW_TOKENS,
                        progress: Callable[[int], None] | None = None) -> Collected:
    venues, records = cell_venues(), []
    with tempfile.TemporaryDirectory(prefix="netgpt-routing-") as folder:
        async with evaluation_cluster(edge_model, cloud_model, adapter, router="shadow",
                                      router_weights=str(shadow_router_file(Path(folder)))) as cluster:
            for split, qs in questions.items():
                for q in qs:
                    records.append(await record_of(cluster, split, q, tuple(venues.get(q.cell_id, ())),
                                                   max_new_tokens))
                    log.debug("routing.collected", split=split, question=q.question, edge_ok=records[-1].edge.ok,
                              cloud_ok=records[-1].cloud.ok)
                    if progress:
                        progress(1)
    return Collected(models_label(edge_model, cloud_model, adapter), max_new_tokens, PROBE_TOKENS, tuple(records))
