"""Where a request terminates: at the edge or forwarded to the cloud, with the reason."""

from __future__ import annotations

from dataclasses import dataclass, field

from netgpt.v1 import user_plane_pb2 as up_pb2


@dataclass(frozen=True)
class Route:
    to_cloud: bool
    reason: int  # up_pb2.RouteReason
    detail: str


@dataclass(frozen=True)
class RoutingPolicy:
    """Answer at the edge for edge-capable tasks, client preference, no cloud, or a blown budget."""

    edge_tasks: frozenset[int] = field(default_factory=lambda: frozenset({up_pb2.TASK_CLASS_LOOKUP}))

    def decide(self, task: int, preference: int, cloud_available: bool,
               budget_left_ms: float | None, cloud_estimate_ms: float) -> Route:
        if preference == up_pb2.ROUTE_PREFERENCE_EDGE:
            return Route(False, up_pb2.ROUTE_REASON_CLIENT_PREFERENCE, "client asked for an edge answer")
        if task in self.edge_tasks and preference != up_pb2.ROUTE_PREFERENCE_CLOUD:
            name = up_pb2.TaskClass.Name(task)
            return Route(False, up_pb2.ROUTE_REASON_EDGE_CAPABLE, f"{name} is answered at the edge")
        if not cloud_available:
            return Route(False, up_pb2.ROUTE_REASON_CLOUD_UNAVAILABLE, "no healthy cloud node is known")
        if preference == up_pb2.ROUTE_PREFERENCE_CLOUD:
            return Route(True, up_pb2.ROUTE_REASON_CLIENT_PREFERENCE, "client asked for a cloud answer")
        if budget_left_ms is not None and cloud_estimate_ms > budget_left_ms:
            return Route(False, up_pb2.ROUTE_REASON_LATENCY_BUDGET,
                         f"cloud first token ~{cloud_estimate_ms:.0f} ms > {max(budget_left_ms, 0):.0f} ms "
                         "left of the latency budget")
        return Route(True, up_pb2.ROUTE_REASON_CLOUD_FORWARDED, "forwarded to the cloud for a full answer")
