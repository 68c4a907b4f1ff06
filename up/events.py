"""What a generation yields, in domain terms: the edge pipeline and the cloud generator produce
these, and ``up.convert`` alone turns them into (and back from) ``GenerateResponse`` messages.

Enum-valued fields use the protocol's enums (``NodeRole``, ``RouteReason``, ``FinishReason``):
shared vocabulary (ints at run time) rather than wire messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netgpt.v1 import common_pb2
from netgpt.v1 import user_plane_pb2 as up_pb2


@dataclass(frozen=True)
class PromptBuilt:
    """The comprehensive prompt the edge built from a concise one."""

    text: str
    facts: tuple[str, ...]
    prompt_tokens: int
    edge_node_id: str


@dataclass(frozen=True)
class Tokens:
    """Generated text and the token ids behind it (``source``: the NodeRole that generated it)."""

    text: str
    token_ids: tuple[int, ...]
    source: common_pb2.NodeRole


@dataclass(frozen=True)
class FellBack:
    """The cloud failed mid-answer: the client discards what streamed and gets an edge answer next."""

    reason: str
    discarded_tokens: int


@dataclass
class Latency:
    personalise_ms: float = 0.0
    edge_generate_ms: float = 0.0
    cloud_ms: float = 0.0
    time_to_first_token_ms: float = 0.0
    total_ms: float = 0.0


@dataclass(frozen=True)
class StepTiming:
    """One workflow step as the edge ran it: ms since the request's workflow began; ``skipped``: why it
    had nothing to do ("" when it ran)."""

    step_id: str
    function: str
    started_ms: float
    finished_ms: float
    skipped: str = ""


@dataclass
class Summary:
    """The last event of every generation: where it terminated, why, and what it cost."""

    session_id: str = ""
    ai_flow_id: str = ""
    terminated_at: common_pb2.NodeRole = common_pb2.NODE_ROLE_UNSPECIFIED
    reason: up_pb2.RouteReason = up_pb2.ROUTE_REASON_UNSPECIFIED
    reason_detail: str = ""
    fallback: bool = False
    latency: Latency = field(default_factory=Latency)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    bytes_edge_to_cloud: int = 0
    edge_model: common_pb2.ModelRef | None = None
    cloud_model: common_pb2.ModelRef | None = None
    finish_reason: up_pb2.FinishReason = up_pb2.FINISH_REASON_UNSPECIFIED
    text: str = ""
    answer_cached: bool = False
    coalesced: bool = False
    routing_inputs: dict[str, str] = field(default_factory=dict)
    steps: tuple[StepTiming, ...] = ()  # the edge's workflow steps, in the order they started


Event = PromptBuilt | Tokens | FellBack | Summary
