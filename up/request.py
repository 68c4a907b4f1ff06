"""A generation request in domain terms, decoded and validated once by ``up.convert``."""

from __future__ import annotations

from dataclasses import dataclass

from netgpt.generation import SamplingParams
from netgpt.v1 import user_plane_pb2 as up_pb2


@dataclass(frozen=True)
class Ran:
    """RAN context of a request: where the UE is, its slice and QoS, and the AI flow id."""

    cell_id: str = ""
    ue_id: str = ""
    slice_id: str = ""
    priority: int = 0  # 1 (highest) .. 15; 0: default
    latency_budget_ms: int = 0  # 0: no budget
    ai_flow_id: str = ""


@dataclass(frozen=True)
class GenerationRequest:
    """What a client asked for: a stripped, bounded prompt and resolved sampling parameters."""

    session_id: str
    prompt: str
    params: SamplingParams
    ran: Ran
    task: up_pb2.TaskClass = up_pb2.TASK_CLASS_UNSPECIFIED
    route: up_pb2.RoutePreference = up_pb2.ROUTE_PREFERENCE_UNSPECIFIED
    workflow: str = ""
