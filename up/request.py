"""A generation request in domain terms, decoded and validated once by ``up.convert``."""

from __future__ import annotations

from dataclasses import dataclass

from netgpt.generation import SamplingParams


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
    task: int = 0  # TaskClass
    route: int = 0  # RoutePreference
    workflow: str = ""
