"""``netgpt eval prompt``: held-out questions through a live all-in-one cluster, scored per route.

For each question of ``heldout.py`` and each route — edge-only (the edge answers its own
comprehensive prompt), NetGPT edge+cloud (the edge forwards it to the cloud), cloud-only (the
concise prompt straight to the cloud, no location context) — two checks: the comprehensive
prompt names the UE's cell and a fitting local fact, and the final answer names a fitting venue
and no other venue of the cell. The retrieval-only baseline answers with the top fact the edge
retrieves, no language model at all. Greedy decoding, fixed ``max_new_tokens``.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from appkit.all_in_one import Cluster, load_models, start_all_in_one
from appkit.client import Question, ask
from edge_node.daemon import load_knowledge
from edge_node.serving.prompt_format import MAX_FACTS
from netgpt.channels import open_channel
from netgpt.config import CloudConfig, CoreConfig, EdgeConfig
from netgpt.v1 import common_pb2
from netgpt.v1 import user_plane_pb2 as up_pb2
from netgpt.v1 import user_plane_pb2_grpc as up_grpc
from netgpt.words import enum_word
from tasks.prompt_completion.heldout import HeldOut
from tasks.prompt_completion.synth import real_cells

MAX_NEW_TOKENS = 40
TIMEOUT_S = 120.0
EDGE_ONLY, NETGPT, CLOUD_ONLY, RETRIEVAL = "edge-only", "NetGPT edge+cloud", "cloud-only", "retrieval-only"
EDGE_ROUTES = {EDGE_ONLY: up_pb2.ROUTE_PREFERENCE_EDGE, NETGPT: up_pb2.ROUTE_PREFERENCE_CLOUD}
Progress = Callable[[int], None]


# --- scoring (pure) -------------------------------------------------------------------------


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def names_in(text: str, names: Iterable[str]) -> set[str]:
    """The ``names`` that ``text`` mentions (case, punctuation and spacing ignored)."""
    padded = f" {_norm(text)} "
    return {name for name in names if f" {_norm(name)} " in padded}


def score_prompt(prompt: str, cell_id: str, expected: Iterable[str]) -> bool:
    """The comprehensive prompt names the UE's cell on its Location line and lists a fitting venue."""
    lines = prompt.splitlines()
    located = bool(lines) and lines[0].startswith("Location:") and f"(cell {cell_id})" in lines[0]
    facts = [line for line in lines if line.startswith("- ")]
    return located and any(names_in(fact.split(":", 1)[0], expected) for fact in facts)


def score_answer(answer: str, expected: Iterable[str], others: Iterable[str]) -> bool:
    """The answer names a fitting venue and none of the cell's ``others``."""
    expected = set(expected)
    named = names_in(answer, expected | set(others))
    return bool(named & expected) and not named - expected


# --- report ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    system: str
    models: str
    question: str
    cell_id: str
    expected: tuple[str, ...]
    prompt: str
    answer: str
    prompt_ok: bool | None  # None: the route builds no comprehensive prompt
    answer_ok: bool
    latency_ms: float
    terminated_at: str = ""


@dataclass(frozen=True)
class Row:
    system: str
    models: str
    n: int
    prompt_ok: float | None
    answer_ok: float
    mean_latency_ms: float
    answer_ok_fact_listed: float | None = None  # answers on the questions whose prompt lists the fitting fact


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)
    max_new_tokens: int = MAX_NEW_TOKENS

    def __add__(self, other: Report) -> Report:
        return Report(self.outcomes + other.outcomes, self.max_new_tokens)

    def rows(self) -> list[Row]:
        groups: dict[tuple[str, str], list[Outcome]] = {}
        for outcome in self.outcomes:
            groups.setdefault((outcome.system, outcome.models), []).append(outcome)
        order = [EDGE_ONLY, NETGPT, CLOUD_ONLY, RETRIEVAL]
        keys = sorted(groups, key=lambda key: order.index(key[0]) if key[0] in order else len(order))
        return [_row(system, models, groups[(system, models)]) for system, models in keys]

    def table(self) -> str:
        header = ("system", "models", "n", "prompt: cell + fitting fact", "answer: fitting venue",
                  "answer | fact listed", "mean ms")
        lines = [_cells(header)]
        for row in self.rows():
            prompt = "n/a" if row.prompt_ok is None else f"{row.prompt_ok:.1%}"
            given = "n/a" if row.answer_ok_fact_listed is None else f"{row.answer_ok_fact_listed:.1%}"
            lines.append(_cells((row.system, row.models, str(row.n), prompt, f"{row.answer_ok:.1%}", given,
                                 f"{row.mean_latency_ms:.0f}")))
        return "\n".join(lines)

    def to_json(self) -> dict[str, object]:
        return {"max_new_tokens": self.max_new_tokens, "decoding": "greedy",
                "rows": [asdict(r) for r in self.rows()], "outcomes": [asdict(o) for o in self.outcomes]}


def _row(system: str, models: str, items: list[Outcome]) -> Row:
    prompts = [o.prompt_ok for o in items if o.prompt_ok is not None]
    listed = [o.answer_ok for o in items if o.prompt_ok]
    return Row(system, models, len(items), sum(prompts) / len(prompts) if prompts else None,
               sum(o.answer_ok for o in items) / len(items), sum(o.latency_ms for o in items) / len(items),
               sum(listed) / len(listed) if listed else None)


def _cells(values: Sequence[str]) -> str:
    widths = (18, 22, 4, 28, 22, 20, 8)
    return "  ".join(v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths, strict=True)))


# --- running the routes ---------------------------------------------------------------------


def cell_venues() -> dict[str, list[str]]:
    return {cell_id: [v.name for v in venues] for cell_id, (_, venues) in real_cells().items()}


def retrieval_baseline(questions: Sequence[HeldOut]) -> Report:
    """No language model: the answer is the top fact the edge's knowledge base retrieves."""
    knowledge, venues, report = load_knowledge(EdgeConfig()), cell_venues(), Report()
    for q in questions:
        facts = knowledge.venues(q.cell_id, q.question, MAX_FACTS)
        answer = facts[0].as_fact() if facts else ""
        report.outcomes.append(Outcome(
            RETRIEVAL, "-", q.question, q.cell_id, q.expected, "", answer,
            any(v.name in q.expected for v in facts), score_answer(answer, q.expected, venues[q.cell_id]), 0.0))
    return report


def evaluate(edge_model: str, cloud_model: str, questions: Sequence[HeldOut],
             max_new_tokens: int = MAX_NEW_TOKENS, progress: Progress | None = None, adapter: str = "",
             intent: str = "") -> Report:
    """Every question on every route of an all-in-one cluster running these models (``adapter``: the cloud's;
    ``intent``: where the edge's intent line comes from, see :func:`intent_settings`)."""
    return asyncio.run(evaluate_async(edge_model, cloud_model, questions, max_new_tokens, progress, adapter, intent))


INTENT_CHOICES = ("knowledge", "model", "none")


def intent_settings(intent: str) -> dict[str, Any]:
    """EdgeConfig fields for an intent behaviour: ``knowledge`` or ``model`` (``intent_from``), ``none`` (no
    intent line, ``intent_tokens = 0``), "" (the edge's defaults)."""
    if intent and intent not in INTENT_CHOICES:
        raise ValueError(f"intent must be one of {', '.join(INTENT_CHOICES)}, got {intent!r}")
    return {"intent_tokens": 0} if intent == "none" else {"intent_from": intent} if intent else {}


def models_label(edge_model: str, cloud_model: str, adapter: str) -> str:
    cloud = f"{cloud_model} ({Path(adapter).name or adapter})" if adapter else cloud_model
    return edge_model if edge_model == cloud else f"{edge_model} + {cloud}"


@asynccontextmanager
async def evaluation_cluster(edge_model: str, cloud_model: str, adapter: str = "",
                             **edge_settings: Any) -> AsyncIterator[Cluster]:
    """An all-in-one cluster on loopback for evaluations: no answer cache, no coalescing, no fallback to the
    edge on a slow cloud (quality, not latency); ``edge_settings``: more EdgeConfig fields."""
    gpt2, llama = await asyncio.to_thread(load_models, edge_model, cloud_model, adapter)
    with tempfile.TemporaryDirectory(prefix="netgpt-eval-") as state:
        cluster = await start_all_in_one(
            gpt2, llama, CoreConfig(listen="127.0.0.1:0", heartbeat_interval_s=0.5, store_dir=state),
            CloudConfig(node_id="cloud-eval", listen="127.0.0.1:0"),
            EdgeConfig(node_id="edge-eval", listen="127.0.0.1:0", profiles_db=":memory:", answer_cache_ttl_s=0,
                       coalesce=False, cloud_token_timeout_s=TIMEOUT_S, **edge_settings))
        try:
            yield cluster
        finally:
            await cluster.stop()


async def evaluate_async(edge_model: str, cloud_model: str, questions: Sequence[HeldOut],
                         max_new_tokens: int = MAX_NEW_TOKENS, progress: Progress | None = None,
                         adapter: str = "", intent: str = "") -> Report:
    models = models_label(edge_model, cloud_model, adapter) + (f" [intent: {intent}]" if intent else "")
    report, venues = Report(max_new_tokens=max_new_tokens), cell_venues()
    async with evaluation_cluster(edge_model, cloud_model, adapter, **intent_settings(intent)) as cluster:
        for q in questions:
            others = venues.get(q.cell_id, [])
            for system in EDGE_ROUTES:
                report.outcomes.append(await _via_edge(cluster, q, system, models, max_new_tokens, others))
            report.outcomes.append(await _cloud_only(cluster, q, models, max_new_tokens, others))
            if progress:
                progress(1)
    return report


async def ask_via_edge(cluster: Cluster, q: HeldOut, route: up_pb2.RoutePreference,
                       max_new_tokens: int) -> tuple[up_pb2.ComprehensivePrompt, up_pb2.GenerationSummary]:
    """``q`` asked through the core and the edge with this route preference: the comprehensive prompt the edge
    built and the request's summary."""
    question = Question(q.question, ue_id="ue-eval", cell_id=q.cell_id, route=route,
                        max_new_tokens=max_new_tokens, timeout_s=TIMEOUT_S)
    transcript = await ask(cluster.core.address, question, transport=cluster.operator)
    prompt = next((e.comprehensive_prompt for e in transcript.events
                   if e.WhichOneof("event") == "comprehensive_prompt"), up_pb2.ComprehensivePrompt())
    return prompt, transcript.summary


async def _via_edge(cluster: Cluster, q: HeldOut, system: str, models: str, max_new_tokens: int,
                    others: list[str]) -> Outcome:
    comprehensive, summary = await ask_via_edge(cluster, q, EDGE_ROUTES[system], max_new_tokens)
    prompt = comprehensive.text
    return Outcome(system, models, q.question, q.cell_id, q.expected, prompt, summary.text,
                   score_prompt(prompt, q.cell_id, q.expected), score_answer(summary.text, q.expected, others),
                   summary.latency.total_ms, enum_word(common_pb2.NodeRole, summary.terminated_at))


async def _cloud_only(cluster: Cluster, q: HeldOut, models: str, max_new_tokens: int, others: list[str]) -> Outcome:
    """The concise prompt sent straight to the cloud as a comprehensive one: no location, no facts."""
    request = up_pb2.GenerateRequest(session_id="eval-cloud-only", kind=up_pb2.PROMPT_KIND_COMPREHENSIVE,
                                     prompt=q.question, params=up_pb2.GenerationParams(max_new_tokens=max_new_tokens))
    async with open_channel(cluster.cloud.address, cluster.operator) as channel:
        events = [e async for e in up_grpc.UserPlaneServiceStub(channel).Generate(request, timeout=TIMEOUT_S)]
    summary = events[-1].summary
    return Outcome(CLOUD_ONLY, models, q.question, q.cell_id, q.expected, "", summary.text, None,
                   score_answer(summary.text, q.expected, others), summary.latency.total_ms, "cloud")
