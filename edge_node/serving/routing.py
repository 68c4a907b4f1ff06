"""Where a request terminates — at the edge or forwarded to the cloud — and why.

A policy is anything with ``async decide(inputs, probe) -> Route``; the default,
:class:`PerformancePolicy`, implements the NetGPT "performance-driven link": task class,
the client's preference, data residency (the cloud regions a request may reach), the cloud's
health, queue and measured latency against the request's budget, and the edge model's
confidence in its own answer. ``probe`` is only awaited when confidence is what decides,
because it costs a few edge tokens.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

from netgpt.v1 import control_plane_pb2 as cp_pb2
from netgpt.v1 import user_plane_pb2 as up_pb2

DEFAULT_PROBE_TOKENS = 8


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
        if self.edge_confidence is not None:
            out["edge_confidence"] = f"{self.edge_confidence:.3f}"
        return out


class RoutingPolicy(Protocol):
    async def decide(self, inputs: RoutingInputs, probe: Callable[[int], Awaitable[float]]) -> Route: ...


@dataclass(frozen=True)
class PerformancePolicy:
    edge_tasks: frozenset[up_pb2.TaskClass] = field(default_factory=lambda: frozenset({up_pb2.TASK_CLASS_LOOKUP}))
    confidence_threshold: float | None = None  # mean token log-probability; None: never probe
    probe_tokens: int = DEFAULT_PROBE_TOKENS
    max_cloud_queue: int = 0  # 0: no limit

    async def decide(self, inputs: RoutingInputs, probe: Callable[[int], Awaitable[float]]) -> Route:
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
        if self.confidence_threshold is not None:
            inputs.edge_confidence = await probe(self.probe_tokens)
            if inputs.edge_confidence >= self.confidence_threshold:
                return Route(False, up_pb2.ROUTE_REASON_EDGE_CONFIDENT,
                             f"edge confidence {inputs.edge_confidence:.2f} >= {self.confidence_threshold:.2f}")
        return Route(True, up_pb2.ROUTE_REASON_CLOUD_FORWARDED, "forwarded to the cloud for a full answer")

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
