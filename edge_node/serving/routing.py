"""Where a request terminates — at the edge or forwarded to the cloud — and why.

A policy is anything with ``async decide(inputs, probe) -> Route``; the default,
:class:`PerformancePolicy`, implements the NetGPT "performance-driven link": task class,
the client's preference, data residency (the cloud regions a request may reach), the cloud's
health, queue and measured latency against the request's budget, and the edge model's
confidence in its own answer — the mean token log-probability against a threshold, or, with a
learned router (``edge_node.serving.learned_router``), its P(the edge's answer is good enough)
from the request's features and the probe. ``probe`` is only awaited when confidence is what
decides, because it costs a few edge tokens.

Cell load: with ``cell_offload_prb`` set, a request from a cell whose last reported PRB utilisation
(``edge_node.serving.cell_loads``) is at or above it goes to the cloud where the edge would otherwise
weigh its own confidence. Why towards the cloud and not the reverse: the answer's tokens cross the same
air interface whichever side generates them, so the radio's load does not make either side cheaper on
the radio; what a saturated cell does predict is a crowd of UEs asking the edge that serves it, whose
few decode slots (``max_concurrency``) serve only its own cells, while the cloud's batches pool every
cell's requests. Offloading the chat requests keeps the edge's slots for what must stay there (lookups,
the client's preference, residency, a latency budget the cloud cannot meet: all decided before).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

from edge_node.serving.cell_loads import CellLoads
from edge_node.serving.learned_router import LearnedRouter, ProbedAnswer, routing_features
from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import user_plane_pb2 as up_pb2

DEFAULT_PROBE_TOKENS = 8
Probe = Callable[[int], Awaitable[ProbedAnswer]]  # the edge model's greedy first answer tokens to the prompt


@dataclass(frozen=True)
class Route:
    to_cloud: bool
    reason: up_pb2.RouteReason
    detail: str


@dataclass
class RoutingInputs:
    task: up_pb2.TaskClass
    preference: up_pb2.RoutePreference
    cloud_available: bool
    cloud_queue: int = 0
    cloud_estimate_ms: float = 0.0
    budget_left_ms: float | None = None
    edge_confidence: float | None = None  # filled in by the policy when it probes
    cloud_unavailable: str = "no cloud node is known to this edge"  # why, when cloud_available is false
    allowed_regions: frozenset[str] | None = None  # cloud regions the data policy allows; None: any
    residency: str = ""  # why the data policy keeps the request from every usable cloud; "": it does not
    question: str = ""  # the client's concise prompt (stays at the edge; only numbers derived from it are logged)
    facts: tuple[str, ...] = ()  # the knowledge-base facts the comprehensive prompt lists
    cell_id: str = ""  # the UE's cell (the session's)
    cell_load: float | None = None  # PRB utilisation of the UE's cell, 0..1, as last reported; None: none reported
    router_features: dict[str, float] | None = None  # filled in by a learned router
    router_p_good: float | None = None  # the learned router's P(edge answer good enough)

    def as_strings(self) -> dict[str, str]:
        out = {
            "task": up_pb2.TaskClass.Name(self.task),
            "preference": up_pb2.RoutePreference.Name(self.preference),
            "cloud_available": str(self.cloud_available).lower(),
        }
        if self.cloud_available:
            out |= {"cloud_queue": str(self.cloud_queue), "cloud_estimate_ms": f"{self.cloud_estimate_ms:.1f}"}
        if self.allowed_regions is not None:
            out["allowed_cloud_regions"] = ",".join(sorted(self.allowed_regions))
        if self.budget_left_ms is not None:
            out["budget_left_ms"] = f"{self.budget_left_ms:.1f}"
        if self.cell_load is not None:
            out["cell_load"] = f"{self.cell_load:.3f}"
        if self.edge_confidence is not None:
            out["edge_confidence"] = f"{self.edge_confidence:.3f}"
        if self.router_p_good is not None:
            out["router_p_good"] = f"{self.router_p_good:.4f}"
        for name, value in (self.router_features or {}).items():
            out[f"router.{name}"] = repr(value)  # exact: the routing data collection reads them back
        return out


FORWARDED = Route(True, up_pb2.ROUTE_REASON_CLOUD_FORWARDED, "forwarded to the cloud for a full answer")


class RoutingPolicy(Protocol):
    def settled(self, inputs: RoutingInputs) -> Route | None:
        """The decision when it needs no probe of the edge model; None when a probe decides."""

    async def decide(self, inputs: RoutingInputs, probe: Probe) -> Route: ...


@dataclass(frozen=True)
class PerformancePolicy:
    edge_tasks: frozenset[up_pb2.TaskClass] = field(default_factory=lambda: frozenset({up_pb2.TASK_CLASS_LOOKUP}))
    confidence_threshold: float | None = None  # mean token log-probability; None: never probe
    probe_tokens: int = DEFAULT_PROBE_TOKENS
    max_cloud_queue: int = 0  # 0: no limit
    router: LearnedRouter | None = None  # replaces the log-probability threshold when set
    router_threshold: float = 0.5  # answer at the edge when the router's P(good) >= this
    router_shadow: bool = False  # score and log the router's features, but route by the rules alone
    cell_offload_prb: float = 0.0  # forward requests from cells at or above this PRB load to the cloud; 0: off
    cell_loads: CellLoads = field(default_factory=CellLoads)  # shared: a policy update keeps the edge's copy

    def settled(self, inputs: RoutingInputs) -> Route | None:
        """The decision when the rules make it without reading the prompt (no probe of the edge model): the
        edge then knows where the request goes before it personalises it. None: a probe decides."""
        inputs.cell_load = self.cell_loads.prb(inputs.cell_id)
        if inputs.preference == up_pb2.ROUTE_PREFERENCE_EDGE:
            return Route(False, up_pb2.ROUTE_REASON_CLIENT_PREFERENCE, "client asked for an edge answer")
        if inputs.task in self.edge_tasks and inputs.preference != up_pb2.ROUTE_PREFERENCE_CLOUD:
            name = up_pb2.TaskClass.Name(inputs.task)
            return Route(False, up_pb2.ROUTE_REASON_EDGE_CAPABLE, f"{name} is answered at the edge")
        if inputs.residency:
            return Route(False, up_pb2.ROUTE_REASON_DATA_RESIDENCY, inputs.residency)
        if not inputs.cloud_available:
            return Route(False, up_pb2.ROUTE_REASON_CLOUD_UNAVAILABLE,
                         f"no cloud can take it: {inputs.cloud_unavailable}")
        if inputs.preference == up_pb2.ROUTE_PREFERENCE_CLOUD:
            return Route(True, up_pb2.ROUTE_REASON_CLIENT_PREFERENCE, "client asked for a cloud answer")
        if self.max_cloud_queue and inputs.cloud_queue >= self.max_cloud_queue:
            return Route(False, up_pb2.ROUTE_REASON_CLOUD_BUSY,
                         f"cloud queue {inputs.cloud_queue} >= max_cloud_queue {self.max_cloud_queue}")
        if inputs.budget_left_ms is not None and inputs.cloud_estimate_ms > inputs.budget_left_ms:
            return Route(False, up_pb2.ROUTE_REASON_LATENCY_BUDGET,
                         f"cloud first token ~{inputs.cloud_estimate_ms:.0f} ms > "
                         f"{max(inputs.budget_left_ms, 0):.0f} ms left of the latency budget")
        if self.cell_offload_prb and inputs.cell_load is not None and inputs.cell_load >= self.cell_offload_prb:
            return Route(True, up_pb2.ROUTE_REASON_CELL_LOAD,
                         f"cell {inputs.cell_id} PRB load {inputs.cell_load:.2f} >= cell_offload_prb "
                         f"{self.cell_offload_prb:.2f}: the edge keeps its slots for the cell's crowd")
        if self.router is not None or self.confidence_threshold is not None:
            return None
        return FORWARDED

    async def decide(self, inputs: RoutingInputs, probe: Probe) -> Route:
        if (route := self.settled(inputs)) is not None:
            return route
        if self.router is not None:
            return await self._learned(self.router, inputs, probe) or FORWARDED
        inputs.edge_confidence = (await probe(self.probe_tokens)).mean_logprob
        if self.confidence_threshold is not None and inputs.edge_confidence >= self.confidence_threshold:
            return Route(False, up_pb2.ROUTE_REASON_EDGE_CONFIDENT,
                         f"edge confidence {inputs.edge_confidence:.2f} >= {self.confidence_threshold:.2f}")
        return FORWARDED

    async def _learned(self, router: LearnedRouter, inputs: RoutingInputs, probe: Probe) -> Route | None:
        """The edge's route when the learned router trusts the edge's answer; None: forward (or shadow)."""
        answer = await probe(router.probe_tokens)
        inputs.edge_confidence = answer.mean_logprob
        inputs.router_features = routing_features(inputs.question, inputs.facts, answer, cloud_queue=inputs.cloud_queue,
                                                  cell_load=inputs.cell_load or 0.0)
        inputs.router_p_good = router.p_good(inputs.router_features)
        if self.router_shadow or inputs.router_p_good < self.router_threshold:
            return None
        return Route(False, up_pb2.ROUTE_REASON_EDGE_CONFIDENT,
                     f"learned router {router.version}: P(edge answer good) {inputs.router_p_good:.2f} >= "
                     f"{self.router_threshold:.2f}")

    def with_router(self, router: LearnedRouter) -> PerformancePolicy:
        """This policy with another learned router (a router version deployed or rolled back)."""
        return replace(self, router=router)

    def to_proto(self) -> cp_pb2.RoutingPolicy:
        message = cp_pb2.RoutingPolicy(edge_tasks=sorted(self.edge_tasks), confidence_probe_tokens=self.probe_tokens,
                                       max_cloud_queue=self.max_cloud_queue)
        if self.confidence_threshold is not None:
            message.confidence_threshold = self.confidence_threshold
        return message

    def updated(self, message: cp_pb2.RoutingPolicy) -> PerformancePolicy:
        """This policy with the fields of a control-plane RoutingPolicy applied."""
        return replace(
            self,
            edge_tasks=frozenset(message.edge_tasks),
            confidence_threshold=message.confidence_threshold if message.HasField("confidence_threshold") else None,
            probe_tokens=message.confidence_probe_tokens or DEFAULT_PROBE_TOKENS,
            max_cloud_queue=message.max_cloud_queue,
        )
